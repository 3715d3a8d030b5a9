"""Every provider adapter through the same scenarios, against the real simulator over HTTP.

Each wire (OpenAI, Azure OpenAI, Anthropic, Gemini, the OpenAI-compatible vendor rows whose
requests differ: Mistral's renames, DeepSeek's and Groq's output-limit fields, and OpenAI's
Responses API, which the OpenAI adapter selects for a Responses client on a flagged upstream) is driven through
its public functions only: the adapter builds the request, a real HTTP client sends it to
`nemorouter sim`, and the adapter parses the answer (the engine's own SSE parser splits streams).
The cases are the same for all: plain text, a tool call and its round trip, an image part, the
output limit, usage with cache and reasoning tokens, and error answers; each non-stream and
stream (and embeddings, on the wires that have them). Expected numbers come from the simulator's own rules (its token count of the very body
the adapter sent, the words a directive asks for), never from the adapter under test.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from conftest import Sim
from nemorouter.engine import sse
from nemorouter.engine.eventstream import EventStreamParser
from nemorouter.money import Usage
from nemorouter.providers import anthropic, azure, bedrock, gemini
from nemorouter.providers.canonical import RESPONSES_PASSTHROUGH
from nemorouter.providers.registry import OPENAI, Adapter
from nemorouter.providers.types import EVENT_STREAM, Completion, Failure, SseEvent, Upstream
from nemorouter.sim import anthropic_plan, bedrock_plan, gemini_plan, responses_plan
from nemorouter.sim.tokens import count_chat_prompt_tokens, count_text_tokens

SIM_AWS_KEY = "AKIASIM" + secrets.token_hex(6).upper()


@dataclass(frozen=True)
class Wire:
    """One adapter, the upstream it is pointed at on the simulator, and what its wire reports."""

    adapter: Adapter
    upstream: Callable[[str], Upstream]  # the simulator's URL -> the deployment
    count_prompt: Callable[[dict[str, Any]], int]  # the simulator's count of a request body
    reasoning_reported: bool = True  # does the usage break out reasoning tokens?
    cache_writes: bool = True  # does the wire report cache writes?
    canonical: dict[str, Any] = field(default_factory=dict)  # what the front door adds to each body


def _openai_row(vendor: str | None) -> Wire:
    config = {"vendor": vendor} if vendor else None
    return Wire(
        OPENAI,
        lambda url: Upstream("gpt-4o-mini", f"{url}/v1", "sk-sim-" + secrets.token_hex(8), config=config),
        count_chat_prompt_tokens,
    )


WIRES = {
    "openai": _openai_row(None),
    "mistral": _openai_row("mistral"),  # seed renamed, `max_tokens` only
    "deepseek": _openai_row("deepseek"),  # `max_tokens` only
    "groq": _openai_row("groq"),  # refuses logprobs; `max_completion_tokens`
    # A Responses client's request (it carries the passthrough) on an upstream flagged
    # `responses_api`: the OpenAI adapter selects its Responses adapter (`Adapter.for_request`).
    "openai-responses": Wire(
        OPENAI,
        lambda url: Upstream(
            "gpt-4o-mini", f"{url}/v1", "sk-sim-" + secrets.token_hex(8), config={"responses_api": True}
        ),
        lambda body: count_chat_prompt_tokens(responses_plan.chat_body(body)),
        canonical={RESPONSES_PASSTHROUGH: {"include": []}},
    ),
    "azure": Wire(
        azure.ADAPTER,
        lambda url: Upstream("prod-mini", url, "sk-sim-" + secrets.token_hex(8)),
        count_chat_prompt_tokens,
    ),
    # anthropic-version 2023-06-01 (pinned) reports no thinking-token breakdown: thinking is
    # inside output_tokens, and the reasoning count stays 0.
    "anthropic": Wire(
        anthropic.ADAPTER,
        lambda url: Upstream("claude-sonnet-4-5", url, "sk-sim-" + secrets.token_hex(8)),
        anthropic_plan.count_prompt_tokens,
        reasoning_reported=False,
    ),
    # Gemini has no cache writes to report (context caching is created apart from requests).
    "gemini": Wire(
        gemini.ADAPTER,
        lambda url: Upstream("gemini-2.5-flash", url, "AIza" + secrets.token_hex(16)),
        gemini_plan.count_prompt_tokens,
        cache_writes=False,
    ),
    # Bedrock Converse: SigV4-signed with a key the simulator knows (AKIASIM..., its rule), the
    # stream in AWS's event-stream framing; Converse breaks no reasoning out of outputTokens.
    "bedrock": Wire(
        bedrock.ADAPTER,
        lambda url: Upstream(
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            url,
            orjson.dumps(
                {"access_key_id": SIM_AWS_KEY, "secret_access_key": "sk-sim-" + SIM_AWS_KEY}
            ).decode(),
            config={"region": "us-east-1"},
        ),
        lambda body: anthropic_plan.count_prompt_tokens(bedrock_plan.messages_body(body, "m")),
        reasoning_reported=False,
    ),
}

# A 1x1 PNG, as clients send images inline.
PNG = (
    "data:image/png;base64,"
    + base64.b64encode(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
        )
    ).decode()
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@dataclass
class Answer:
    """What the adapter made of one exchange, the same for a stream as for a whole answer."""

    sent: dict[str, Any]  # the body the adapter built
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    failure: Failure | None = None  # an error answer, or an error event inside a stream
    chunks: int = 0


def _retry_after(resp: httpx.Response) -> int | None:
    value = resp.headers.get("retry-after")
    return int(value) if value and value.isdigit() else None


def _from_completion(sent: dict[str, Any], completion: Completion) -> Answer:
    message = completion.body["choices"][0]["message"]
    assert message["role"] == "assistant"
    calls = [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in message.get("tool_calls") or []
    ]
    return Answer(sent, message.get("content") or "", calls, completion.finish_reason, completion.usage)


def _add_chunk(answer: Answer, chunk: dict[str, Any]) -> None:
    """Fold one OpenAI-shaped chunk into the answer, as a client assembles a stream."""
    assert chunk["object"] == "chat.completion.chunk", chunk
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        answer.text += delta.get("content") or ""
        for piece in delta.get("tool_calls") or []:
            while len(answer.tool_calls) <= piece["index"]:
                answer.tool_calls.append({"id": None, "name": "", "arguments": ""})
            call = answer.tool_calls[piece["index"]]
            call["id"] = piece.get("id") or call["id"]
            function = piece.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""


async def exchange(wire: Wire, sim: Sim, body: dict[str, Any]) -> Answer:
    """Build with the adapter, send over HTTP to the simulator, parse with the adapter."""
    body = {**body, **wire.canonical}
    upstream = wire.upstream(sim.url)
    adapter = wire.adapter.for_request(body, upstream)  # as the dispatcher picks it
    request = adapter.chat_request(body, upstream)
    answer = Answer(orjson.loads(request.body))
    async with httpx.AsyncClient(timeout=30) as client:
        if not request.stream:
            resp = await client.post(request.url, headers=request.headers, content=request.body)
            if resp.status_code != 200:
                answer.failure = adapter.error_of(
                    resp.status_code, resp.content, _retry_after(resp), resp.headers
                )
                return answer
            return _from_completion(answer.sent, adapter.chat_response(orjson.loads(resp.content)))
        async with client.stream("POST", request.url, headers=request.headers, content=request.body) as resp:
            if resp.status_code != 200:
                body_bytes = await resp.aread()
                answer.failure = adapter.error_of(
                    resp.status_code, body_bytes, _retry_after(resp), resp.headers
                )
                return answer
            decode = adapter.stream_decoder()
            events = (
                _frames(resp.aiter_raw()) if request.framing == EVENT_STREAM else sse.decode(resp.aiter_raw())
            )
            async for event in events:
                step = decode(event)
                for chunk in step.chunks:
                    _add_chunk(answer, chunk)
                answer.chunks += len(step.chunks)
                answer.finish_reason = step.finish_reason or answer.finish_reason
                answer.usage = step.usage or answer.usage
                if step.error is not None:
                    answer.failure = step.error
                    break
                if step.done:
                    break
    return answer


async def _frames(pieces: AsyncIterator[bytes]) -> AsyncIterator[SseEvent]:
    """AWS event-stream messages, decoded by the engine's parser (botocore's decoder)."""
    parser = EventStreamParser()
    async for piece in pieces:
        parser.feed(piece)
        while parser.ready:
            yield parser.ready.popleft()
    parser.end()


def chat(text: str, stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": "ignored", "messages": [{"role": "user", "content": text}], "stream": stream, **extra}


def _usage(answer: Answer) -> Usage:
    assert answer.failure is None, answer.failure
    assert answer.usage is not None, "no usage parsed"
    return answer.usage


WIRE_IDS = list(WIRES)
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
EVERY_WIRE = pytest.mark.parametrize("wire", WIRE_IDS)


# -- text ---------------------------------------------------------------------------------------


@EVERY_WIRE
@STREAM
async def test_plain_text(sim: Sim, wire: str, stream: bool) -> None:
    answer = await exchange(WIRES[wire], sim, chat("Tell me about rivers [sim:tokens=7]", stream))
    assert answer.failure is None and answer.tool_calls == []
    assert len(answer.text.split()) == 7  # the seven words the directive asked for
    assert answer.finish_reason == "stop"
    usage = _usage(answer)
    assert usage.completion_tokens == 7
    assert usage.prompt_tokens == WIRES[wire].count_prompt(answer.sent)
    assert (usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens) == (0, 0, 0)
    if stream:
        assert answer.chunks >= 2  # text arrived in pieces, not as one
    if wire == "openai-responses":  # the Responses wire itself, not Chat Completions
        assert "input" in answer.sent and "messages" not in answer.sent


@EVERY_WIRE
async def test_a_stream_says_what_the_whole_answer_says(sim: Sim, wire: str) -> None:
    """The simulator answers the same request the same way; so must the adapter's two parsers."""
    text = "Compare the two ways [sim:tokens=12,cached=5]"
    whole = await exchange(WIRES[wire], sim, chat(text, False))
    streamed = await exchange(WIRES[wire], sim, chat(text, True))
    assert streamed.text == whole.text and whole.text
    assert streamed.finish_reason == whole.finish_reason == "stop"
    assert _usage(streamed) == _usage(whole)


# Where each wire carries the request's output limit (providers/output_limit.py, vendors.py).
LIMIT_FIELD = {
    "openai": ("max_completion_tokens",),
    "mistral": ("max_tokens",),
    "deepseek": ("max_tokens",),
    "groq": ("max_completion_tokens",),
    "openai-responses": ("max_output_tokens",),
    "azure": ("max_completion_tokens",),
    "anthropic": ("max_tokens",),
    "gemini": ("generationConfig", "maxOutputTokens"),
    "bedrock": ("inferenceConfig", "maxTokens"),
}


# OpenAI's Responses API refuses a `max_output_tokens` under 16.
LIMIT = {"openai-responses": 16}


@EVERY_WIRE
@STREAM
async def test_the_output_limit_is_sent_in_the_field_the_wire_obeys(
    sim: Sim, wire: str, stream: bool
) -> None:
    limit = LIMIT.get(wire, 4)
    answer = await exchange(
        WIRES[wire], sim, chat("Go on at length [sim:tokens=40]", stream, max_tokens=limit)
    )
    found: Any = answer.sent
    for name in LIMIT_FIELD[wire]:
        found = found[name]
    assert found == limit
    assert len(answer.text.split()) == limit
    assert answer.finish_reason == "length"
    assert _usage(answer).completion_tokens == limit


# -- tools --------------------------------------------------------------------------------------


@EVERY_WIRE
@STREAM
async def test_a_tool_call_round_trip(sim: Sim, wire: str, stream: bool) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = await exchange(WIRES[wire], sim, {"messages": [question], "tools": [WEATHER], "stream": stream})
    assert first.failure is None
    assert first.finish_reason == "tool_calls"
    assert first.text == ""
    [call] = first.tool_calls
    assert call["name"] == "get_weather"
    assert isinstance(call["id"], str) and call["id"]
    arguments = orjson.loads(call["arguments"])
    assert isinstance(arguments, dict) and isinstance(arguments.get("city"), str)  # the schema's field
    assert _usage(first).completion_tokens > 0
    # The answer to the call goes back, in the wire's form; the model now answers in text.
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": call["arguments"]},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": call["id"], "content": '{"forecast": "sunny", "celsius": 21}'}
    second = await exchange(
        WIRES[wire], sim, {"messages": [question, assistant, result], "tools": [WEATHER], "stream": stream}
    )
    assert second.failure is None
    assert second.finish_reason == "stop" and second.tool_calls == []
    assert second.text.strip()
    assert _usage(second).prompt_tokens == WIRES[wire].count_prompt(second.sent)
    assert _usage(second).prompt_tokens > _usage(first).prompt_tokens  # the call and result count


# -- images -------------------------------------------------------------------------------------


@EVERY_WIRE
@STREAM
async def test_an_image_part(sim: Sim, wire: str, stream: bool) -> None:
    text = "What is in this picture? [sim:tokens=6]"
    plain = await exchange(WIRES[wire], sim, chat(text, stream))
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": PNG}}]
    pictured = await exchange(
        WIRES[wire], sim, {"messages": [{"role": "user", "content": parts}], "stream": stream}
    )
    assert pictured.failure is None and len(pictured.text.split()) == 6
    # The image reached the provider as an image (the simulator counts it as one) ...
    usage = _usage(pictured)
    assert usage.prompt_tokens == WIRES[wire].count_prompt(pictured.sent)
    assert usage.prompt_tokens > _usage(plain).prompt_tokens
    # ... in the wire's own form, with the same bytes.
    data = PNG.split(",", 1)[1]
    assert data in orjson.dumps(pictured.sent).decode()


# -- usage --------------------------------------------------------------------------------------


@EVERY_WIRE
@STREAM
async def test_usage_with_cache_and_reasoning_tokens(sim: Sim, wire: str, stream: bool) -> None:
    spec = WIRES[wire]
    writes = ",cache_write=2" if spec.cache_writes else ""
    text = f"Think it over, then answer in a few words please [sim:tokens=5,cached=4,reasoning=3{writes}]"
    answer = await exchange(spec, sim, chat(text, stream))
    usage = _usage(answer)
    assert usage.prompt_tokens == spec.count_prompt(answer.sent)  # cached and written tokens inside it
    assert usage.cached_tokens == 4
    assert usage.cache_write_tokens == (2 if spec.cache_writes else 0)
    assert usage.completion_tokens == 5 + 3  # the visible words and the reasoning
    assert usage.reasoning_tokens == (3 if spec.reasoning_reported else 0)
    assert len(answer.text.split()) == 5  # reasoning is never shown as content


# -- errors -------------------------------------------------------------------------------------

# directive -> (status, kind, retryable, retry-after the failure carries)
ERRORS = {
    "bad_key=1": (401, "auth", True, None),
    "status=401": (401, "auth", True, None),
    "status=403": (403, "forbidden", False, None),
    "status=429,retry_after=7": (429, "rate_limited", True, 7),  # Gemini: RetryInfo's retryDelay
    "status=500": (500, "server", True, None),
    "status=503": (503, "server", True, None),
    "status=529": (529, "overloaded", True, None),  # Anthropic's overloaded_error
    "status=400": (400, "invalid", False, None),
}
# Google answers an unknown API key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID; and has no
# 529 of its own: any 5xx is a server error there.
BAD_KEY_STATUS = {"gemini": 400}
GEMINI_KINDS = {"overloaded": "server"}
# AWS has no 401: a rejected key is 403 UnrecognizedClientException; a 503 is Bedrock's
# ServiceUnavailableException (overloaded) and it has no 529 of its own (a server error).
BEDROCK = {
    "bad_key=1": (403, "auth"),
    "status=401": (403, "auth"),
    "status=503": (503, "overloaded"),
    "status=529": (529, "server"),
}


@EVERY_WIRE
@STREAM
@pytest.mark.parametrize("directive", list(ERRORS))
async def test_error_answers_are_classified(sim: Sim, wire: str, stream: bool, directive: str) -> None:
    status, kind, retryable, retry_after = ERRORS[directive]
    if directive == "bad_key=1":
        status = BAD_KEY_STATUS.get(wire, status)
    if wire == "gemini":
        kind = GEMINI_KINDS.get(kind, kind)
    if wire == "bedrock":
        status, kind = BEDROCK.get(directive, (status, kind))
    answer = await exchange(WIRES[wire], sim, chat(f"Hello [sim:{directive}]", stream))
    failure = answer.failure
    assert failure is not None, "an error answer was taken for a reply"
    assert (failure.status, failure.kind, failure.retryable) == (status, kind, retryable)
    assert failure.retry_after == retry_after
    assert failure.message.strip() and failure.message != "upstream error"  # the provider's own words
    assert answer.text == "" and answer.usage is None


# What each wire sends when a stream fails midway: OpenAI-style `{"error": {"code": 500}}`, Gemini's
# INTERNAL, Anthropic's `overloaded_error` event (its usual mid-stream failure).
STREAM_ERROR_KIND = {"anthropic": "overloaded"}


@EVERY_WIRE
async def test_an_error_inside_a_stream_ends_it_as_a_retryable_failure(sim: Sim, wire: str) -> None:
    answer = await exchange(WIRES[wire], sim, chat("Start, then fail [sim:tokens=20,error_after=3]", True))
    assert answer.failure is not None
    assert (answer.failure.kind, answer.failure.retryable) == (STREAM_ERROR_KIND.get(wire, "server"), True)
    assert answer.text.strip()  # what came before the error was passed on
    assert answer.finish_reason is None  # the stream never finished


# -- embeddings (the wires that have them) ------------------------------------------------------


@pytest.mark.parametrize("wire", [w for w in WIRE_IDS if WIRES[w].adapter.embeddings_request is not None])
async def test_embeddings(sim: Sim, wire: str) -> None:
    adapter = WIRES[wire].adapter
    assert adapter.embeddings_request is not None and adapter.embeddings_response is not None
    texts = ["the first text, to embed", "a second one"]
    request = adapter.embeddings_request(
        {"model": "ignored", "input": texts, "dimensions": 8}, WIRES[wire].upstream(sim.url)
    )
    async with httpx.AsyncClient(timeout=30) as client:
        resp = await client.post(request.url, headers=request.headers, content=request.body)
        failed = await client.post(
            request.url,
            headers={**request.headers, "x-sim": "status=429;retry_after=4"},
            content=request.body,
        )
    assert resp.status_code == 200, resp.text
    parsed = adapter.embeddings_response(orjson.loads(resp.content))
    assert [len(item["embedding"]) for item in parsed.body["data"]] == [8, 8]
    assert parsed.usage == Usage(prompt_tokens=sum(count_text_tokens(t) for t in texts))
    failure = adapter.error_from_response(failed.status_code, failed.content, _retry_after(failed))
    assert (failure.kind, failure.status, failure.retry_after) == ("rate_limited", 429, 4)
