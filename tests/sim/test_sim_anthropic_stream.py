"""The sim's Anthropic event streams, parsed by the official `anthropic` SDK and read raw: the exact
event sequence, stream == non-stream, tools, thinking, usage, and failures inside a 200 stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import TextBlock, ThinkingBlock, ToolUseBlock

MODEL = "claude-sonnet-5"
HELLO: list[Any] = [{"role": "user", "content": "Hello, world!"}]
WEATHER = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}


@pytest.fixture(scope="module")
def claude(sim_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim_url, api_key="sk-sim-test", max_retries=0, timeout=10) as c:
        yield c


def _events(sim_url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every frame, checking each `event:` line names its data's type."""
    response = httpx.post(
        f"{sim_url}/v1/messages",
        json={"model": MODEL, "max_tokens": 1000, "stream": True, **body},
        headers={"x-api-key": "sk-sim-test", "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in response.text.split("\n\n"):
        if not frame:
            continue
        name_line, data_line = frame.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


def test_exact_event_sequence(sim_url: str) -> None:
    events = _events(sim_url, {"messages": HELLO})
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == 10
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2][1]["usage"]["output_tokens"] == deltas  # one token per text delta


def test_stream_matches_non_stream(claude: anthropic.Anthropic) -> None:
    whole = claude.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
    with claude.messages.stream(model=MODEL, max_tokens=1000, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert isinstance(whole.content[0], TextBlock) and text == whole.content[0].text
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_streamed_tool_arguments_parse_to_the_same_input(claude: anthropic.Anthropic, sim_url: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    whole = claude.messages.create(model=MODEL, max_tokens=1000, messages=messages, tools=[WEATHER])
    with claude.messages.stream(model=MODEL, max_tokens=1000, messages=messages, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    call, streamed = whole.content[0], final.content[0]
    assert isinstance(call, ToolUseBlock) and isinstance(streamed, ToolUseBlock)
    assert (streamed.id, streamed.name, streamed.input) == (call.id, call.name, call.input)
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == whole.usage.output_tokens
    events = _events(sim_url, {"messages": messages, "tools": [WEATHER]})
    start = events[1][1]["content_block"]
    assert start["type"] == "tool_use" and start["input"] == {}
    fragments = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert len(fragments) > 1 and json.loads("".join(fragments)) == call.input


def test_thinking_streams_as_deltas_and_a_signature(claude: anthropic.Anthropic, sim_url: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "Think first [sim:thinking=6,tokens=3]"}]
    whole = claude.messages.create(model=MODEL, max_tokens=1000, messages=messages)
    with claude.messages.stream(model=MODEL, max_tokens=1000, messages=messages) as stream:
        final = stream.get_final_message()
    thinking, text = final.content
    assert isinstance(thinking, ThinkingBlock) and isinstance(whole.content[0], ThinkingBlock)
    assert thinking.thinking == whole.content[0].thinking and thinking.signature == whole.content[0].signature
    assert isinstance(text, TextBlock) and len(text.text.split(" ")) == 3
    assert final.usage.output_tokens == 9
    kinds = [
        d["delta"]["type"] for n, d in _events(sim_url, {"messages": messages}) if n == "content_block_delta"
    ]
    assert kinds == ["thinking_delta"] * 6 + ["signature_delta"] + ["text_delta"] * 3


def test_stream_usage_cache_counts_and_caps(claude: anthropic.Anthropic, sim_url: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "Cached [sim:cached=4,cache_write_1h=2,tokens=50]"}]
    events = _events(sim_url, {"messages": messages, "max_tokens": 7})
    start_usage = events[0][1]["message"]["usage"]
    assert start_usage["cache_read_input_tokens"] == 4 and start_usage["cache_creation_input_tokens"] == 2
    assert start_usage["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2}
    end = events[-2][1]
    assert end["delta"]["stop_reason"] == "max_tokens" and end["usage"]["output_tokens"] == 7
    assert end["usage"]["cache_read_input_tokens"] == 4  # cumulative counts repeated at the end
    with claude.messages.stream(model=MODEL, max_tokens=7, messages=messages) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.cache_read_input_tokens == 4


def test_stop_sequence_in_stream(sim_url: str) -> None:
    body: dict[str, Any] = {"messages": HELLO}
    words = "".join(
        d["delta"]["text"] for n, d in _events(sim_url, body) if n == "content_block_delta"
    ).split()
    events = _events(sim_url, {**body, "stop_sequences": [words[3]]})
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": words[3]}
    assert [d["delta"]["text"].strip() for n, d in events if n == "content_block_delta"] == words[:3]


def test_error_event_inside_a_200_stream_raises_in_the_sdk(claude: anthropic.Anthropic, sim_url: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "Fail soon [sim:tokens=20,error_after=4]"}]
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as exc,
        claude.messages.stream(model=MODEL, max_tokens=1000, messages=messages) as stream,
    ):
        for text in stream.text_stream:
            seen.append(text)
    assert len(seen) == 4
    assert isinstance(exc.value.body, dict) and exc.value.body["error"]["type"] == "overloaded_error"
    names = [name for name, _ in _events(sim_url, {"messages": messages})]
    assert names[-1] == "error" and "message_delta" not in names and names.count("content_block_delta") == 4


def test_cut_after_drops_the_connection_mid_body(sim_url: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "[sim:cut_after=2]"}],
    }
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            f"{sim_url}/v1/messages",
            json=body,
            headers={"x-api-key": "sk-sim-test", "anthropic-version": "2023-06-01"},
        ) as response,
    ):
        for chunk in response.iter_bytes():
            received += chunk
    assert received.count(b"event: content_block_delta") == 2 and b"message_stop" not in received


def test_status_directive_replaces_the_stream(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(
            model=MODEL,
            max_tokens=10,
            stream=True,
            messages=[{"role": "user", "content": "[sim:status=529]"}],
        )


def test_latency_and_chunk_delay(sim_url: str) -> None:
    began = time.monotonic()
    events = _events(sim_url, {"messages": [{"role": "user", "content": "[sim:latency_ms=300,tokens=2]"}]})
    assert time.monotonic() - began >= 0.3 and [n for n, _ in events].count("content_block_delta") == 2
    began = time.monotonic()
    events = _events(sim_url, {"messages": [{"role": "user", "content": "[sim:chunk_delay_ms=40,tokens=3]"}]})
    # every frame after message_start waits: block start, ping, 3 deltas, block stop, delta, stop
    assert len(events) == 9 and time.monotonic() - began >= 8 * 0.04


def test_tool_input_cut_by_max_tokens_streams_its_prefix(sim_url: str) -> None:
    # get_weather 1 token + the full input {"city": "...", "days": N} is more than 6 tokens
    events = _events(
        sim_url, {"messages": [{"role": "user", "content": "Weather?"}], "tools": [WEATHER], "max_tokens": 6}
    )
    fragments = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert fragments.startswith('{"city"') and events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"]["output_tokens"] == 6
