"""Anthropic stream events -> OpenAI chunks: a full recorded sequence, usage, errors, odd events."""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.providers.anthropic import ADAPTER
from nemorouter.providers.types import SseEvent, StreamStep

START_USAGE = {
    "input_tokens": 20,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
    "output_tokens": 1,
}


def ev(name: str | None, **data: Any) -> SseEvent:
    payload = {"type": name, **data} if name else data
    return SseEvent(name, orjson.dumps(payload))


def start(usage: dict[str, Any] | None = None) -> SseEvent:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage or START_USAGE,
    }
    return ev("message_start", message=message)


def delta(index: int, kind: str, **fields: Any) -> SseEvent:
    return ev("content_block_delta", index=index, delta={"type": kind, **fields})


# A stream as the real API sends it (thinking, text, two tool calls), recorded by hand.
RECORDED = [
    start(),
    ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
    ev("ping"),
    delta(0, "thinking_delta", thinking="The user wants"),
    delta(0, "thinking_delta", thinking=" weather."),
    delta(0, "signature_delta", signature="EqQBCgIYAhIM"),
    ev("content_block_stop", index=0),
    ev("content_block_start", index=1, content_block={"type": "text", "text": ""}),
    delta(1, "text_delta", text="Checking"),
    delta(1, "text_delta", text=" now."),
    ev("content_block_stop", index=1),
    ev(
        "content_block_start",
        index=2,
        content_block={"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}},
    ),
    delta(2, "input_json_delta", partial_json=""),
    delta(2, "input_json_delta", partial_json='{"city": '),
    delta(2, "input_json_delta", partial_json='"Paris"}'),
    ev("content_block_stop", index=2),
    ev(
        "content_block_start",
        index=3,
        content_block={"type": "tool_use", "id": "toolu_B", "name": "now", "input": {}},
    ),
    ev("content_block_stop", index=3),
    ev(
        "message_delta",
        delta={"stop_reason": "tool_use", "stop_sequence": None},
        usage={"output_tokens": 87, "cache_read_input_tokens": 5},
    ),
    ev("message_stop"),
]


def run(events: list[SseEvent]) -> list[StreamStep]:
    decode = ADAPTER.stream_decoder()
    return [decode(e) for e in events]


def deltas(steps: list[StreamStep]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for s in steps for c in s.chunks]


def test_recorded_stream_becomes_openai_chunks() -> None:
    steps = run(RECORDED)
    chunks = [c for s in steps for c in s.chunks]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "msg_01" for c in chunks)
    assert all(c["model"] == "claude-sonnet-4-5" and len(c["choices"]) == 1 for c in chunks)
    assert deltas(steps) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "The user wants"},
        {"reasoning_content": " weather."},
        {
            "thinking_blocks": [
                {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"}
            ]
        },
        {"content": "Checking"},
        {"content": " now."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_B",
                    "type": "function",
                    "function": {"name": "now", "arguments": ""},
                }
            ]
        },
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "tool_calls"
    assert [s.finish_reason for s in steps if s.finish_reason] == ["tool_calls"]
    # every content, reasoning and tool fragment counts, so a cut stream can be estimated
    assert sum(s.output_tokens_seen for s in steps) == 8
    assert [s.done for s in steps].count(True) == 1 and steps[-1].done
    assert all(s.usage is None for s in steps[:-1]) and all(s.error is None for s in steps)


def test_final_usage_merges_message_start_and_message_delta() -> None:
    final = run(RECORDED)[-1]
    # input and cache-write counts from message_start; output and the (overriding) cache read
    # from message_delta, Anthropic's cumulative counts
    assert final.usage == Usage(
        prompt_tokens=20 + 100 + 5,
        completion_tokens=87,
        cached_tokens=5,
        cache_write_tokens=100,
        cache_write_1h_tokens=60,
    )
    assert final.raw_usage is not None and final.raw_usage["output_tokens"] == 87


def test_text_stream_with_only_message_start_counts() -> None:
    steps = run(
        [
            start({"input_tokens": 9, "output_tokens": 1}),
            ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            delta(0, "text_delta", text="Hi"),
            ev("content_block_stop", index=0),
            ev(
                "message_delta",
                delta={"stop_reason": "max_tokens", "stop_sequence": None},
                usage={"output_tokens": 1},
            ),
            ev("message_stop"),
        ]
    )
    assert steps[-1].usage == Usage(prompt_tokens=9, completion_tokens=1)
    assert [s.finish_reason for s in steps if s.finish_reason] == ["length"]


def test_error_event_after_output_charges_what_was_seen() -> None:
    steps = run(
        [
            start({"input_tokens": 30, "cache_read_input_tokens": 10, "output_tokens": 1}),
            ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            delta(0, "text_delta", text="one"),
            delta(0, "text_delta", text=" two"),
            delta(0, "text_delta", text=" three"),
            ev("error", error={"type": "overloaded_error", "message": "Overloaded"}),
        ]
    )
    failure = steps[-1].error
    assert failure is not None and (failure.kind, failure.status, failure.retryable) == (
        "overloaded",
        529,
        True,
    )
    assert failure.message == "Overloaded"
    assert steps[-1].usage == Usage(prompt_tokens=40, completion_tokens=3, cached_tokens=10)
    assert steps[-1].raw_usage is not None and steps[-1].raw_usage["interrupted"] is True
    assert not steps[-1].done and not steps[-1].chunks


def test_error_event_before_output_charges_nothing() -> None:
    steps = run([start(), ev("error", error={"type": "api_error", "message": "Internal"})])
    failure = steps[-1].error
    assert (
        failure is not None and (failure.kind, failure.status) == ("server", 500) and steps[-1].usage is None
    )
    invalid = run([ev("error", error={"type": "invalid_request_error", "message": "bad"})])[0].error
    assert invalid is not None and invalid.retryable is False and invalid.status == 400


def test_forced_json_tool_streams_as_content() -> None:
    steps = run(
        [
            start(),
            ev(
                "content_block_start",
                index=0,
                content_block={"type": "tool_use", "id": "t", "name": "json_output", "input": {}},
            ),
            delta(0, "input_json_delta", partial_json='{"a": '),
            delta(0, "input_json_delta", partial_json="1}"),
            ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 5}),
            ev("message_stop"),
        ]
    )
    assert deltas(steps)[1:] == [{"content": '{"a": '}, {"content": "1}"}, {}]
    assert [s.finish_reason for s in steps if s.finish_reason] == ["stop"]


def test_ping_unknown_events_and_missing_event_names() -> None:
    decode = ADAPTER.stream_decoder()
    assert decode(ev("ping")) == StreamStep()
    assert decode(ev("some_future_event", detail=1)) == StreamStep()
    # a server that omits `event:` lines is read by the data's own `type`
    unnamed = decode(
        SseEvent(None, orjson.dumps({"type": "message_start", "message": {"id": "m", "usage": {}}}))
    )
    assert unnamed.chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert decode(delta(7, "citations_delta", citation={})) == StreamStep()


def test_redacted_thinking_and_a_full_tool_input_at_block_start() -> None:
    steps = run(
        [
            start(),
            ev(
                "content_block_start",
                index=0,
                content_block={"type": "redacted_thinking", "data": "b3BhcXVl"},
            ),
            ev(
                "content_block_start",
                index=1,
                content_block={"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}},
            ),
        ]
    )
    assert deltas(steps)[1:] == [
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "b3BhcXVl"}]},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "t",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"x": 1}'},
                }
            ]
        },
    ]


def test_malformed_event_is_a_protocol_failure() -> None:
    step = ADAPTER.stream_decoder()(
        SseEvent("content_block_delta", b'{"type": "content_block_delta", "index": ')
    )
    assert step.error is not None and step.error.kind == "protocol" and step.error.status == 502
