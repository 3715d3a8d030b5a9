"""Fault and latency directives, by header and in-band, seen through the SDK and raw aiohttp."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

AUTH = {"Authorization": "Bearer sk-sim-test"}

Chat = Callable[..., ChatCompletion]  # the `chat` fixture (conftest)
StreamChat = Callable[..., Iterator[ChatCompletionChunk]]  # the `stream` fixture


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _raw_post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={**AUTH, "content-type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


async def _sse_events(
    url: str, body: dict[str, Any]
) -> tuple[list[tuple[float, bytes]], BaseException | None]:
    """Read a stream event by event with arrival times; returns the events and the error that ended it."""
    events: list[tuple[float, bytes]] = []
    start = time.monotonic()
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(f"{url}/v1/chat/completions", json=body, headers=AUTH) as resp:
                assert resp.status == 200
                buffer = b""
                async for data in resp.content.iter_any():
                    buffer += data
                    while b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        events.append((time.monotonic() - start, event))
        except aiohttp.ClientError as exc:
            return events, exc
    return events, None


def test_status_and_retry_after_by_header(chat: Chat) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        chat(
            model="m",
            messages=_user("hi"),
            extra_headers={"x-sim": "status=503;retry_after=7"},
        )
    assert exc.value.status_code == 503 and exc.value.response.headers["retry-after"] == "7"
    assert isinstance(exc.value.body, dict) and exc.value.body["type"] == "server_error"


def test_status_429_in_band_also_for_streams(chat: Chat, stream: StreamChat) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        chat(model="m", messages=_user("hi [sim:status=429,retry_after=2]"))
    assert exc.value.code == "rate_limit_exceeded" and exc.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.BadRequestError):
        stream(model="m", messages=_user("[sim:status=400]"))


def test_bad_key_is_401(sim_url: str) -> None:
    for key in ("sk-nemo-v1-abc", "nope"):
        with (
            OpenAI(base_url=f"{sim_url}/v1", api_key=key, max_retries=0) as bad,
            pytest.raises(openai.AuthenticationError) as exc,
        ):
            bad.chat.completions.create(model="m", messages=_user("hi"))
        assert exc.value.code == "invalid_api_key" and key not in exc.value.message


def test_latency(chat: Chat) -> None:
    start = time.monotonic()
    chat(model="m", messages=_user("hi [sim:latency_ms=300]"))
    assert time.monotonic() - start >= 0.3


def test_tokens_directive_exact_and_not_in_content(chat: Chat) -> None:
    r = chat(model="m", messages=_user("Hi [sim:tokens=3]"))
    text = r.choices[0].message.content or ""
    assert len(text.split(" ")) == 3 and "sim" not in text
    # Hi [ sim : tokens = 3 ] -> 8 tokens: directives are ordinary prompt text
    assert r.usage is not None and r.usage.prompt_tokens == 3 + 3 + 8 and r.usage.completion_tokens == 3
    capped = chat(model="m", messages=_user("Hi [sim:tokens=40]"), max_tokens=5)
    assert (
        capped.choices[0].finish_reason == "length" and capped.usage and capped.usage.completion_tokens == 5
    )
    empty = chat(model="m", messages=_user("[sim:tokens=0]"))
    assert empty.choices[0].message.content == "" and empty.usage and empty.usage.completion_tokens == 0


def test_chunks_flushed_with_chunk_delay(sim_url: str) -> None:
    body = {"model": "m", "stream": True, "messages": _user("[sim:tokens=3,chunk_delay_ms=120]")}
    events, error = asyncio.run(_sse_events(sim_url, body))
    assert error is None and events[-1][1] == b"data: [DONE]"
    times = [t for t, _ in events]
    # role, 3 words, finish: four 120 ms gaps, and the first chunk arrived long before the last
    assert times[-1] - times[0] >= 0.45
    assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.1


def test_cut_after_drops_connection(stream: StreamChat, sim_url: str) -> None:
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": _user("[sim:tokens=10,cut_after=3]"),
    }
    events, error = asyncio.run(_sse_events(sim_url, body))
    assert isinstance(error, aiohttp.ClientPayloadError)
    payloads = [json.loads(e[len(b"data: ") :]) for _, e in events]
    assert len(payloads) == 4 and all(p["choices"][0]["finish_reason"] is None for p in payloads)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream(model="m", messages=_user("[sim:tokens=10,cut_after=3]")):
            seen.append(chunk.choices[0].delta.content or "")
    assert len([s for s in seen if s]) == 3


def test_error_after_raises_in_sdk(stream: StreamChat, sim_url: str) -> None:
    seen: list[str] = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream(model="m", messages=_user("[sim:tokens=10,error_after=2]")):
            seen.append(chunk.choices[0].delta.content or "")
    assert len([s for s in seen if s]) == 2 and "simulated" in exc.value.message
    events, error = asyncio.run(
        _sse_events(sim_url, {"model": "m", "stream": True, "messages": _user("[sim:error_after=0]")})
    )
    assert error is None and len(events) == 2
    assert json.loads(events[-1][1][len(b"data: ") :])["error"]["type"] == "server_error"


def test_malformed(sim_url: str) -> None:
    status, raw = _raw_post(
        f"{sim_url}/v1/chat/completions", {"model": "m", "messages": _user("hi")}, {"x-sim": "malformed=1"}
    )
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    events, error = asyncio.run(
        _sse_events(sim_url, {"model": "m", "stream": True, "messages": _user("[sim:malformed=1,tokens=2]")})
    )
    assert error is None and events[-1][1] == b"data: [DONE]"
    bad = [e for _, e in events[:-1] if not _is_json(e[len(b"data: ") :])]
    assert len(bad) == 1


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except json.JSONDecodeError:
        return False
    return True


def test_no_usage(stream: StreamChat) -> None:
    chunks = list(
        stream(model="m", messages=_user("[sim:no_usage=1]"), stream_options={"include_usage": True})
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"


def test_reasoning_and_cached(chat: Chat) -> None:
    text = "Hi [sim:tokens=4,reasoning=5,cached=3]"  # 16 prompt tokens in the message
    r = chat(model="m", messages=_user(text))
    u = r.usage
    assert u is not None and u.prompt_tokens == 3 + 3 + 16
    assert u.completion_tokens == 4 + 5 and u.total_tokens == 22 + 9
    assert u.completion_tokens_details and u.completion_tokens_details.reasoning_tokens == 5
    assert u.prompt_tokens_details and u.prompt_tokens_details.cached_tokens == 3
    assert len((r.choices[0].message.content or "").split(" ")) == 4
    over = chat(model="m", messages=_user("[sim:cached=100000]"))
    assert over.usage and over.usage.prompt_tokens_details
    assert over.usage.prompt_tokens_details.cached_tokens == over.usage.prompt_tokens
    capped = chat(model="m", messages=_user("[sim:reasoning=5]"), max_tokens=7)
    assert (
        capped.usage and capped.usage.completion_tokens == 7 and capped.choices[0].finish_reason == "length"
    )
    assert len((capped.choices[0].message.content or "").split(" ")) == 2
