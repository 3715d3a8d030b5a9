"""The /v1/messages front door's answers, purely: our chat.completion -> an Anthropic message, our
OpenAI chunk stream -> Anthropic's exact event sequence, and the door's SSE frame pump."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event

from nemorouter import jsonx
from nemorouter.frontdoors.anthropic_messages.reply import anthropic_usage, message_from_completion
from nemorouter.frontdoors.anthropic_messages.stream import Event, MessagesStream
from nemorouter.frontdoors.event_stream import converted_events
from nemorouter.money import Usd, parse_usd

# ----------------------------------------------------------------------------- response

USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 9,
    "total_tokens": 129,
    "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 30},
    "completion_tokens_details": {"reasoning_tokens": 0},
    "cost": Decimal("0.0000123450"),
}


def completion(message: dict[str, Any], finish: str | None, **choice: Any) -> dict[str, Any]:
    return {
        "id": "gen-1",
        "object": "chat.completion",
        "created": 0,
        "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
        "usage": USAGE,
    }


def test_usage_in_anthropic_conventions_with_exact_cost() -> None:
    assert anthropic_usage(USAGE) == {
        "input_tokens": 40,  # 120 - 50 cache reads - 30 cache writes
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 50,
        "output_tokens": 9,
        "cost": Usd(parse_usd("0.000012345")),
    }
    text = jsonx.dumps(anthropic_usage(USAGE)).decode()
    assert '"cost":0.000012345' in text
    assert anthropic_usage(None)["cost"] == Usd(0)
    with pytest.raises(ValueError, match="exact"):
        anthropic_usage({**USAGE, "cost": 0.1})


def test_text_message() -> None:
    body = completion({"role": "assistant", "content": "Hello there"}, "stop")
    assert message_from_completion(body) == {
        "id": "gen-1",
        "type": "message",
        "role": "assistant",
        "model": "openai/gpt-4o-mini",
        "content": [{"type": "text", "text": "Hello there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(USAGE),
    }


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, reason: str) -> None:
    message = message_from_completion(completion({"role": "assistant", "content": "x"}, finish))
    assert message["stop_reason"] == reason and message["stop_sequence"] is None


def test_stop_sequence_when_the_upstream_names_it() -> None:
    body = completion({"role": "assistant", "content": "a b"}, "stop", stop_reason="END")
    message = message_from_completion(body, ["END"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")
    # A stop reason that is not one of the request's sequences (e.g. an EOS token id) is end_turn.
    other = completion({"role": "assistant", "content": "a b"}, "stop", stop_reason=50256)
    assert message_from_completion(other, ["END"])["stop_reason"] == "end_turn"


def test_tool_calls_become_tool_use_blocks() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Ro'},
        },
    ]
    body = completion({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls")
    message = message_from_completion(body)
    assert message["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},  # cut short: not an object
    ]
    assert message["stop_reason"] == "tool_use"


def test_thinking_and_refusal() -> None:
    signed = {
        "role": "assistant",
        "content": "4",
        "reasoning_content": "2+2",
        "thinking_blocks": [{"type": "thinking", "thinking": "2+2", "signature": "s"}],
    }
    assert message_from_completion(completion(signed, "stop"))["content"] == [
        {"type": "thinking", "thinking": "2+2", "signature": "s"},
        {"type": "text", "text": "4"},
    ]
    unsigned = {"role": "assistant", "content": "4", "reasoning_content": "2+2"}
    assert message_from_completion(completion(unsigned, "stop"))["content"][0] == {
        "type": "thinking",
        "thinking": "2+2",
        "signature": "",
    }
    refused = message_from_completion(
        completion({"role": "assistant", "content": None, "refusal": "No."}, "stop")
    )
    assert refused["content"] == [{"type": "text", "text": "No."}] and refused["stop_reason"] == "refusal"


# ----------------------------------------------------------------------------- stream


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "gen-9",
        "object": "chat.completion.chunk",
        "model": "openai/gpt-4o-mini",
        "choices": choices,
        **extra,
    }


def run(chunks: list[dict[str, Any]], stops: tuple[str, ...] = ()) -> list[Event]:
    converter = MessagesStream("gen-fallback", "fallback-model", stops)
    events = [e for c in chunks for e in converter.feed(c)]
    return events + converter.end()


def names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


def final_message(events: list[Event]) -> Any:
    """What the official SDK accumulates from these events (after a JSON round trip)."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for _, data in events:
        event = json.loads(jsonx.dumps(data), parse_float=Decimal)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


def test_text_stream_event_sequence() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello"}),
            chunk({"content": " world"}),
            chunk({}, "stop"),
            chunk(None, usage=USAGE),
        ]
    )
    assert names(events) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "gen-9" and start["model"] == "openai/gpt-4o-mini" and start["content"] == []
    assert start["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
    }
    assert events[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[3][1] == {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hello"},
    }
    assert events[5][1] == {"type": "content_block_stop", "index": 0}
    assert events[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": anthropic_usage(USAGE),
    }
    assert events[7][1] == {"type": "message_stop"}
    message = final_message(events)
    assert message.content[0].text == "Hello world"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (40, 50)
    assert message.usage.cache_creation_input_tokens == 30 and message.usage.output_tokens == 9


def test_tool_call_stream_gives_each_call_its_own_block() -> None:
    first = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    second = {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "get_time", "arguments": "{}"},
    }
    events = run(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"content": "Let me check."}),
            chunk({"tool_calls": [first]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
            chunk({"tool_calls": [second]}),
            chunk({}, "tool_calls"),
            chunk(None, usage=USAGE),
        ]
    )
    starts = [(d["index"], d["content_block"]) for n, d in events if n == "content_block_start"]
    assert starts == [
        (0, {"type": "text", "text": ""}),
        (1, {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}),
        (2, {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}),
    ]
    fragments = [(d["index"], d["delta"]) for n, d in events if n == "content_block_delta"][1:]
    assert fragments == [
        (1, {"type": "input_json_delta", "partial_json": '{"city":'}),
        (1, {"type": "input_json_delta", "partial_json": ' "Paris"}'}),
        (2, {"type": "input_json_delta", "partial_json": "{}"}),
    ]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert stops == [0, 1, 2]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    message = final_message(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"} and message.content[2].input == {}
    assert message.stop_reason == "tool_use"


def test_error_chunk_becomes_an_error_event_and_ends_the_stream() -> None:
    converter = MessagesStream("gen-1", "m")
    events = converter.feed(chunk({"role": "assistant", "content": ""}))
    events += converter.feed(chunk({"content": "partial"}))
    error = {"code": 502, "type": "upstream_error", "message": "the provider failed"}
    events += converter.feed(chunk({}, "error", error=error))
    assert names(events) == ["message_start", "ping", "content_block_start", "content_block_delta", "error"]
    assert events[-1][1] == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "the provider failed",
            "code": 502,
            "nemo_type": "upstream_error",
        },
    }
    assert converter.ended
    assert converter.feed(chunk(None, usage=USAGE)) == [] and converter.end() == []


def test_usage_before_the_error_chunk_becomes_a_message_delta_before_the_error_event() -> None:
    """The relay sends the usage (with cost) first, then the error: the client sees the cost in
    a message_delta (no stop reason) and then the error event, which ends the stream."""
    converter = MessagesStream("gen-1", "m")
    events = converter.feed(chunk({"role": "assistant", "content": ""}))
    events += converter.feed(chunk({"content": "partial"}))
    events += converter.feed(chunk(None, usage=USAGE))
    error = {"code": 502, "type": "upstream_error", "message": "the provider failed"}
    events += converter.feed(chunk({}, "error", error=error))
    assert names(events) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "error",
    ]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": None, "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": 40,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 50,
        "output_tokens": 9,
        "cost": Usd(parse_usd("0.000012345")),
    }
    assert converter.ended and converter.end() == []


def test_empty_stream_still_opens_and_closes_the_message() -> None:
    events = run([])
    assert names(events) == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[0][1]["message"]["id"] == "gen-fallback"
    assert events[2][1]["usage"]["cost"] == Usd(0)


def test_thinking_stream_with_signature_then_text() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "Let me"}),
            chunk({"reasoning_content": " think."}),
            chunk(
                {"thinking_blocks": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"}]}
            ),
            chunk({"content": "Answer."}),
            {
                **chunk({}, "stop"),
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}],
            },
            chunk(None, usage=USAGE),
        ],
        stops=("END",),
    )
    message = final_message(events)
    assert message.content[0].type == "thinking"
    assert (message.content[0].thinking, message.content[0].signature) == ("Let me think.", "sig")
    assert message.content[1].text == "Answer."
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    assert [d["index"] for n, d in events if n == "content_block_stop"] == [0, 1]


# ----------------------------------------------------------------------------- the door's frame pump


async def test_frame_pump_parses_our_sse_passes_keepalives_and_closes_the_relay() -> None:
    """The pump (`frontdoors/event_stream.py`) with the Messages converter, over hand-written
    relay frames: split reads, a keep-alive comment, the exact cost literal of the usage chunk,
    and closing it closes the inner stream."""
    usage = jsonx.dumps({**USAGE, "cost": Usd(parse_usd("0.000012345"))})
    frames = [
        b"data: " + json.dumps(chunk({"role": "assistant", "content": ""})).encode() + b"\n\n",
        b": keepalive\n\n",
        b"data: " + json.dumps(chunk({"content": "Hi"})).encode()[:20],  # one frame in two reads
        json.dumps(chunk({"content": "Hi"})).encode()[20:] + b"\n\n",
        b"data: " + json.dumps(chunk({}, "stop")).encode() + b"\n\n",
        b'data: {"id":"gen-9","choices":[],"usage":' + usage + b"}\n\n",
        b"data: [DONE]\n\n",
    ]
    closed: list[bool] = []

    async def relay(items: list[bytes]) -> Any:
        try:
            for item in items:
                yield item
        finally:
            closed.append(True)

    out = [f async for f in converted_events(relay(frames), MessagesStream("gen-9", "m"))]
    assert b": keepalive\n\n" in out and closed == [True]
    text = b"".join(out).decode()
    assert text.startswith("event: message_start\ndata: {")
    assert '"usage":{"input_tokens":40,' in text and '"cost":0.000012345}' in text
    assert text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')

    # A client that leaves mid-stream closes the pump, and the pump closes the relay (which settles).
    closed.clear()
    pump = converted_events(relay(frames), MessagesStream("gen-9", "m"))
    assert (await pump.__anext__()).startswith(b"event: message_start")
    await pump.aclose()
    assert closed == [True]


def test_message_start_takes_the_prompt_count_told_before_it() -> None:
    """The relay's early prompt count (OpenAI conventions) becomes message_start's usage, in
    Anthropic's: input_tokens without the cache reads and writes."""
    stream = MessagesStream("gen-1", "m")
    stream.prompt(
        {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 20}}
    )
    events = stream.feed({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    start = events[0][1]["message"]["usage"]
    assert start == {
        "input_tokens": 50,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 30,
        "output_tokens": 0,
    }
    late = MessagesStream("gen-2", "m")
    late.feed({"choices": []})
    late.prompt({"prompt_tokens": 100})  # after the start: nothing to change
    assert late.early is None


def test_an_answer_with_malformed_tool_calls_keeps_what_it_can_read() -> None:
    """A provider's body is untrusted: `tool_calls` that is not a list, or a call that names no
    function, is left out (Anthropic's tool_use always names its tool), never a 500."""
    odd = completion({"role": "assistant", "content": "Hi", "tool_calls": 5}, "stop")
    assert message_from_completion(odd)["content"] == [{"type": "text", "text": "Hi"}]
    calls = [{"id": "c1", "function": {"arguments": "{}"}}, {"id": "c2", "function": {"name": "f"}}]
    named = message_from_completion(
        completion({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls")
    )
    assert [b["name"] for b in named["content"]] == ["f"]


@pytest.mark.parametrize(
    "bad",
    [
        {"choices": 7},
        {"choices": True},
        {"choices": [None, {"index": 0, "delta": "oops"}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": 5}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": [1], "function": {"name": "f"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 2, "id": "x"}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": ["stop"]}]},
    ],
)
def test_a_malformed_chunk_is_skipped_and_the_message_ends_well(bad: dict[str, Any]) -> None:
    events = run(
        [chunk({"content": "Hello"}), {**chunk(), **bad}, chunk({"content": " there"}), chunk({}, "stop")]
    )
    assert names(events)[0] == "message_start" and names(events)[-1] == "message_stop"
    message = final_message(events)
    assert message.stop_reason == "end_turn"
    assert "".join(b.text for b in message.content if b.type == "text") == "Hello there"
    assert all(b.name for b in message.content if b.type == "tool_use")
