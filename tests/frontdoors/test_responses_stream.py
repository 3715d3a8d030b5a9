"""The Responses front door's streams: our chat chunks -> the Responses event sequence, every event
validated by the openai SDK's own `ResponseStreamEvent` type."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from nemorouter.frontdoors.responses.reasoning import decode_blocks
from nemorouter.frontdoors.responses.reply import response_from_completion
from nemorouter.frontdoors.responses.request import ResponsesRequest, translate
from nemorouter.frontdoors.responses.stream import Event, ResponsesStream
from nemorouter.money import Usd

EVENT = TypeAdapter(ResponseStreamEvent)
USAGE = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "cost": Decimal("0.0000039")}
TOOLS = [
    {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}},
    {"type": "function", "name": "read", "parameters": {"type": "object", "properties": {}}},
]


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "gen-s", "object": "chat.completion.chunk", "created": 1765000000, "choices": [choice]}


def usage_chunk(usage: dict[str, Any] = USAGE) -> dict[str, Any]:
    return {
        "id": "gen-s",
        "object": "chat.completion.chunk",
        "created": 1765000000,
        "choices": [],
        "usage": usage,
    }


def run(request: ResponsesRequest, chunks: list[dict[str, Any]], end: bool = True) -> list[Event]:
    converter = ResponsesStream(request, "gen-s", 1765000000)
    events = [e for c in chunks for e in converter.feed(c)]
    if end:
        events += converter.end()
    for number, (name, data) in enumerate(events):
        assert name == data["type"]
        assert data["sequence_number"] == number
        EVENT.validate_python(data)  # strictly the SDK's own event types
    return events


def names(events: list[Event]) -> list[str]:
    return [name for name, _ in events]


def test_a_text_stream_is_the_documented_sequence_ending_with_usage_and_cost() -> None:
    request = translate({"model": "m", "input": "hi", "stream": True})
    events = run(
        request,
        [
            chunk({"role": "assistant", "content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            usage_chunk(),
        ],
    )
    assert names(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0][1]["response"]["status"] == "in_progress"
    assert events[6][1]["text"] == "Hello"
    final = Response.model_validate(events[-1][1]["response"])
    assert final.output_text == "Hello"
    assert final.status == "completed"
    assert events[-1][1]["response"]["usage"]["cost"] == Usd(3_900_000)
    assert final.usage is not None and final.usage.total_tokens == 14


def test_parallel_tool_calls_stream_their_arguments_and_close_at_the_finish() -> None:
    request = translate({"model": "m", "input": "go", "tools": TOOLS, "stream": True})
    first = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "shell", "arguments": '{"c'},
    }
    second = {"index": 1, "id": "call_b", "type": "function", "function": {"name": "read", "arguments": "{}"}}
    chunks = [
        chunk({"content": "Running."}),
        chunk({"tool_calls": [first]}),
        chunk({"tool_calls": [second]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '":1}'}}]}),  # interleaved
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    events = run(request, chunks)
    done = [data for name, data in events if name == "response.function_call_arguments.done"]
    assert [(d["output_index"], d["arguments"], d["name"]) for d in done] == [
        (1, '{"c":1}', "shell"),
        (2, "{}", "read"),
    ]
    deltas = [data for name, data in events if name == "response.function_call_arguments.delta"]
    assert [(d["item_id"], d["delta"]) for d in deltas] == [
        ("fc_call_a", '{"c'),
        ("fc_call_b", "{}"),
        ("fc_call_a", '":1}'),
    ]
    final = Response.model_validate(events[-1][1]["response"])
    assert [item.type for item in final.output] == ["message", "function_call", "function_call"]
    assert events[-1][1]["response"]["output"][1]["arguments"] == '{"c":1}'
    assert names(events)[-1] == "response.completed"


def test_reasoning_streams_as_a_summary_then_the_text() -> None:
    blocks = [{"type": "thinking", "thinking": "Hmm.", "signature": "sig=="}]
    request = translate(
        {"model": "m", "input": "q", "include": ["reasoning.encrypted_content"], "stream": True}
    )
    chunks = [
        chunk({"reasoning_content": "Hm"}),
        chunk({"reasoning_content": "m."}),
        chunk({"thinking_blocks": blocks}),
        chunk({"content": "42"}),
        chunk({}, "stop"),
        usage_chunk(),
    ]
    events = run(request, chunks)
    assert names(events)[2:9] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    reasoning = events[8][1]["item"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Hmm."}]
    assert decode_blocks(reasoning["encrypted_content"]) == blocks
    assert Response.model_validate(events[-1][1]["response"]).output_text == "42"


def test_a_stream_cut_by_the_limit_ends_incomplete() -> None:
    request = translate({"model": "m", "input": "q", "max_output_tokens": 3, "stream": True})
    events = run(request, [chunk({"content": "Once"}), chunk({}, "length"), usage_chunk()])
    assert names(events)[-1] == "response.incomplete"
    final = Response.model_validate(events[-1][1]["response"])
    assert final.incomplete_details is not None and final.incomplete_details.reason == "max_output_tokens"


def test_an_upstream_failure_is_an_error_then_response_failed_with_what_was_charged() -> None:
    request = translate({"model": "m", "input": "q", "stream": True})
    error = {
        "id": "gen-s",
        "choices": [],
        "error": {"message": "upstream broke", "code": 502, "type": "upstream_error"},
    }
    converter = ResponsesStream(request, "gen-s", 1765000000)
    events = [e for c in [chunk({"content": "Par"}), usage_chunk(), error] for e in converter.feed(c)]
    assert converter.end() == [] and converter.feed(chunk({"content": "late"})) == []
    for number, (_, data) in enumerate(events):
        assert data["sequence_number"] == number
        EVENT.validate_python(data)
    assert names(events)[-2:] == ["error", "response.failed"]
    assert events[-2][1]["message"] == "upstream broke"
    failed = events[-1][1]["response"]
    assert Response.model_validate(failed).status == "failed"
    assert failed["error"]["code"] == "server_error" and failed["error"]["nemo_type"] == "upstream_error"
    assert failed["usage"]["cost"] == Usd(3_900_000)


def test_a_stream_ends_as_the_same_response_as_the_json_answer() -> None:
    request = translate({"model": "m", "input": "go", "tools": TOOLS})
    call = {"id": "call_a", "type": "function", "function": {"name": "shell", "arguments": "{}"}}
    message = {"role": "assistant", "content": "Sure.", "tool_calls": [call]}
    whole = {
        "id": "gen-s",
        "created": 1765000000,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": USAGE,
    }
    streamed = run(
        request,
        [
            chunk({"content": "Sure."}),
            chunk({"tool_calls": [{"index": 0, **call}]}),
            chunk({}, "tool_calls"),
            usage_chunk(),
        ],
    )
    final = streamed[-1][1]["response"]
    answer = response_from_completion(whole, request, "gen-s")

    def shape(response: dict[str, Any]) -> list[Any]:
        return [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]

    assert shape(final) == shape(answer)
    assert final["usage"] == answer["usage"]
    assert {k: v for k, v in final.items() if k != "output"} == {
        k: v for k, v in answer.items() if k != "output"
    }


def test_a_stream_with_no_chunks_still_opens_and_completes() -> None:
    events = run(translate({"model": "m", "input": "q", "stream": True}), [])
    assert names(events) == ["response.created", "response.in_progress", "response.completed"]


def test_an_upstreams_own_reasoning_item_keeps_its_id_and_encrypted_content() -> None:
    """A native Responses upstream's reasoning item (RESPONSES_REASONING on a delta, when it opens
    and again whole when done) opens the reasoning item under the upstream's id, which the client
    must send back, and closes it with the upstream's `encrypted_content` (asked for)."""
    request = translate({"model": "m", "input": "hi", "include": ["reasoning.encrypted_content"]})
    opened = {"type": "reasoning", "id": "rs_up", "summary": []}
    done = {**opened, "summary": [{"type": "summary_text", "text": "hm"}], "encrypted_content": "gAAA"}
    events = run(
        request,
        [
            chunk({"responses_reasoning": [opened]}),
            chunk({"reasoning_content": "hm"}),
            chunk({"responses_reasoning": [done]}),
            chunk({"content": "Hi"}),
            chunk(finish="stop"),
            usage_chunk(),
        ],
    )
    items = [data["item"] for name, data in events if name == "response.output_item.done"]
    assert items[0]["id"] == "rs_up" and items[0]["encrypted_content"] == "gAAA"
    assert items[0]["summary"] == [{"type": "summary_text", "text": "hm"}]
    added = [data["item"] for name, data in events if name == "response.output_item.added"]
    assert added[0]["id"] == "rs_up" and [i["type"] for i in added] == ["reasoning", "message"]
    deltas = [data for name, data in events if name == "response.reasoning_summary_text.delta"]
    assert deltas and all(d["item_id"] == "rs_up" for d in deltas)
    final = Response.model_validate(events[-1][1]["response"])
    assert final.output[0].id == "rs_up"
    # Not asked for: the upstream's encrypted content stays out of the answer.
    plain = run(
        translate({"model": "m", "input": "hi"}),
        [chunk({"responses_reasoning": [done]}), chunk({"content": "Hi"})],
    )
    assert "encrypted_content" not in plain[-1][1]["response"]["output"][0]
