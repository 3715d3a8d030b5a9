"""The sim's Gemini wire format, parsed by the official google-genai SDK: proof it speaks the real format."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

WORDS = re.compile(r"^[a-z]+( [a-z]+)*$")
HELLO = "Hello, world!"  # Hello , world ! -> 4 tokens
HELLO_PROMPT = 3 + 3 + 4  # priming + one turn's overhead + its text
FLASH = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "days": types.Schema(type=types.Type.INTEGER),
        },
        required=["city", "days"],
    ),
)
NOW = types.FunctionDeclaration(name="now", description="The time")


def make_client(url: str, key: str = "sk-sim-test", version: str | None = "v1beta") -> genai.Client:
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=url, api_version=version, timeout=10_000)
    )


@pytest.fixture(scope="module")
def gclient(sim_url: str) -> Iterator[genai.Client]:
    client = make_client(sim_url)
    yield client
    client.close()


Generate = Callable[..., types.GenerateContentResponse]


@pytest.fixture
def generate(gclient: genai.Client) -> Generate:
    def call(contents: Any, **config: Any) -> types.GenerateContentResponse:
        return gclient.models.generate_content(
            model=FLASH, contents=contents, config=types.GenerateContentConfig(**config) if config else None
        )

    return call


def stream_all(client: genai.Client, contents: Any, **config: Any) -> list[types.GenerateContentResponse]:
    cfg = types.GenerateContentConfig(**config) if config else None
    return list(client.models.generate_content_stream(model=FLASH, contents=contents, config=cfg))


def test_text_shape_and_usage(generate: Generate) -> None:
    r = generate(HELLO)
    assert r.candidates and len(r.candidates) == 1
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.candidates[0].content is not None and r.candidates[0].content.role == "model"
    assert r.model_version == FLASH and r.response_id
    assert r.text is not None and WORDS.match(r.text)
    words = len(r.text.split())
    u = r.usage_metadata
    assert u is not None
    assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (
        HELLO_PROMPT,
        words,
        HELLO_PROMPT + words,
    )
    assert u.cached_content_token_count is None and u.thoughts_token_count is None


def test_system_instruction_counts_as_prompt_and_changes_the_reply(generate: Generate) -> None:
    plain = generate(HELLO)
    r = generate(HELLO, system_instruction="Be terse.")  # Be terse . -> 3, plus a turn's overhead
    assert r.usage_metadata is not None and r.usage_metadata.prompt_token_count == HELLO_PROMPT + 3 + 3
    assert r.text != plain.text


def test_deterministic_and_seeded(generate: Generate) -> None:
    assert generate(HELLO).text == generate(HELLO).text
    assert generate(HELLO).text != generate(HELLO, seed=5).text


def test_stream_matches_whole_and_keeps_running_usage(gclient: genai.Client, generate: Generate) -> None:
    whole = generate(HELLO)
    chunks = stream_all(gclient, HELLO)
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert len(chunks) == len((whole.text or "").split()) + 1  # one event per token, then the finish
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks[:-1])
    running = [c.usage_metadata.candidates_token_count for c in chunks if c.usage_metadata]
    assert running == sorted(running)  # running totals, not deltas
    assert chunks[-1].usage_metadata == whole.usage_metadata


def test_stream_wire_has_no_done_marker(sim_url: str) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": HELLO}]}]}
    with httpx.stream(
        "POST",
        f"{sim_url}/v1beta/models/{FLASH}:streamGenerateContent",
        params={"alt": "sse"},
        headers={"x-goog-api-key": "sk-sim-test"},
        json=body,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    events = [json.loads(line[6:]) for line in lines]
    assert "[DONE]" not in "".join(lines)
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert (
        events[-1]["usageMetadata"]["totalTokenCount"]
        == events[-1]["usageMetadata"]["promptTokenCount"]
        + events[-1]["usageMetadata"]["candidatesTokenCount"]
    )
    # without alt=sse, Google streams a JSON array
    array = httpx.post(
        f"{sim_url}/v1beta/models/{FLASH}:streamGenerateContent",
        headers={"x-goog-api-key": "sk-sim-test"},
        json=body,
    ).json()
    assert isinstance(array, list) and array[-1]["candidates"][0]["finishReason"] == "STOP"


def test_function_call_finishes_with_stop(generate: Generate, gclient: genai.Client) -> None:
    r = generate("Weather in Paris?", tools=[types.Tool(function_declarations=[WEATHER, NOW])])
    assert r.candidates and r.candidates[0].finish_reason == types.FinishReason.STOP
    calls = r.function_calls
    assert calls and len(calls) == 1 and calls[0].name == "get_weather"
    assert set(calls[0].args or {}) == {"city", "days"} and isinstance((calls[0].args or {})["days"], int)
    streamed = stream_all(
        gclient, "Weather in Paris?", tools=[types.Tool(function_declarations=[WEATHER, NOW])]
    )
    streamed_calls = [fc for c in streamed for fc in (c.function_calls or [])]
    assert [(fc.name, fc.args) for fc in streamed_calls] == [(calls[0].name, calls[0].args)]
    named = generate(
        "What time?",
        tools=[types.Tool(function_declarations=[WEATHER, NOW])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["now"]
            )
        ),
    )
    assert (
        named.function_calls and named.function_calls[0].name == "now" and named.function_calls[0].args == {}
    )
    off = generate(
        "Weather?",
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE)
        ),
    )
    assert off.function_calls is None and off.text


def test_function_response_turn_gets_text(generate: Generate) -> None:
    call = types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Paris", "days": 1}))
    result = types.Part(
        function_response=types.FunctionResponse(name="get_weather", response={"content": "sunny"})
    )
    contents = [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
        types.Content(role="model", parts=[call]),
        types.Content(role="user", parts=[result]),
    ]
    r = generate(contents, tools=[types.Tool(function_declarations=[WEATHER])])
    assert r.function_calls is None and r.text and WORDS.match(r.text)
    mismatch = [*contents[:2], types.Content(role="user", parts=[result, result])]
    with pytest.raises(errors.ClientError, match="number of function response parts"):
        generate(mismatch, tools=[types.Tool(function_declarations=[WEATHER])])


def test_thinking_usage_and_thought_parts(generate: Generate, gclient: genai.Client) -> None:
    r = generate(f"{HELLO} [sim:thinking=40]")
    u = r.usage_metadata
    assert u is not None and u.thoughts_token_count == 40
    assert u.total_token_count == (u.prompt_token_count or 0) + (u.candidates_token_count or 0) + 40
    assert (
        r.candidates
        and r.candidates[0].content
        and all(not p.thought for p in r.candidates[0].content.parts or [])
    )
    shown = generate(
        f"{HELLO} [sim:reasoning=40]", thinking_config=types.ThinkingConfig(include_thoughts=True)
    )
    assert shown.candidates and shown.candidates[0].content
    parts = shown.candidates[0].content.parts or []
    assert parts[0].thought is True and parts[0].text and len(parts[0].text.split()) <= 40
    assert shown.text and shown.text == parts[1].text  # the SDK's .text leaves the thought out
    capped = generate(f"{HELLO} [sim:thinking=40]", thinking_config=types.ThinkingConfig(thinking_budget=10))
    assert capped.usage_metadata and capped.usage_metadata.thoughts_token_count == 10
    off = generate(f"{HELLO} [sim:thinking=40]", thinking_config=types.ThinkingConfig(thinking_budget=0))
    assert off.usage_metadata and off.usage_metadata.thoughts_token_count is None
    # thinking counts against maxOutputTokens first
    tight = generate(f"{HELLO} [sim:thinking=40,tokens=30]", max_output_tokens=50)
    assert tight.usage_metadata and (
        tight.usage_metadata.thoughts_token_count,
        tight.usage_metadata.candidates_token_count,
    ) == (40, 10)
    assert tight.candidates and tight.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    streamed = stream_all(
        gclient, f"{HELLO} [sim:thinking=40]", thinking_config=types.ThinkingConfig(include_thoughts=True)
    )
    first = streamed[0].candidates[0].content.parts[0]  # type: ignore[index,union-attr]
    assert first.thought is True
    assert streamed[-1].usage_metadata and streamed[-1].usage_metadata.thoughts_token_count == 40


def test_cached_tool_use_and_pretend_prompt_usage(generate: Generate) -> None:
    u = generate(f"{HELLO} [sim:cached=5]").usage_metadata
    assert u is not None and (u.prompt_token_count, u.cached_content_token_count) == (HELLO_PROMPT + 7, 5)
    assert u.cache_tokens_details and u.cache_tokens_details[0].token_count == 5
    big = generate(f"{HELLO} [sim:prompt_tokens=250000,cached=1000,tool_use=12]").usage_metadata
    assert big is not None
    assert (big.prompt_token_count, big.cached_content_token_count, big.tool_use_prompt_token_count) == (
        250000,
        1000,
        12,
    )
    assert big.total_token_count == 250000 + 12 + (big.candidates_token_count or 0)


def test_max_tokens_stop_sequences_and_candidates(generate: Generate) -> None:
    capped = generate(f"{HELLO} [sim:tokens=20]", max_output_tokens=5)
    assert capped.candidates and capped.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert capped.text and len(capped.text.split()) == 5
    assert capped.usage_metadata and capped.usage_metadata.candidates_token_count == 5
    full = (generate(f"{HELLO} [sim:tokens=20]").text or "").split()
    stopped = generate(f"{HELLO} [sim:tokens=20]", stop_sequences=[full[3]])
    assert stopped.candidates and stopped.candidates[0].finish_reason == types.FinishReason.STOP
    assert (stopped.text or "").split() == full[: full.index(full[3])]
    two = generate(HELLO, candidate_count=2)
    assert two.candidates and [c.index for c in two.candidates] == [0, 1]
    texts = [c.content.parts[0].text for c in two.candidates if c.content and c.content.parts]
    assert len(set(texts)) == 2
    assert two.usage_metadata and two.usage_metadata.candidates_token_count == sum(
        len((t or "").split()) for t in texts
    )


def test_json_output(generate: Generate) -> None:
    plain = generate(f"{HELLO} [sim:tokens=3]", response_mime_type="application/json")
    value = json.loads(plain.text or "")
    assert set(value) == {"answer"} and len(value["answer"].split()) == 3
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    shaped = generate(HELLO, response_mime_type="application/json", response_json_schema=schema)
    value = json.loads(shaped.text or "")
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)
    typed = generate(
        HELLO,
        response_mime_type="application/json",
        response_schema=types.Schema(
            type=types.Type.OBJECT, properties={"ok": types.Schema(type=types.Type.BOOLEAN)}, required=["ok"]
        ),
    )
    assert isinstance(json.loads(typed.text or "")["ok"], bool)


def test_blocked_prompt(generate: Generate) -> None:
    r = generate(f"{HELLO} [sim:blocked=1]")
    assert not r.candidates
    assert r.prompt_feedback and r.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert (
        r.usage_metadata and r.usage_metadata.prompt_token_count == HELLO_PROMPT + 7
    )  # [ sim : blocked = 1 ]


def test_errors_parse_as_sdk_errors(sim_url: str, generate: Generate, gclient: genai.Client) -> None:
    bad = make_client(sim_url, key="not-a-key")
    with pytest.raises(errors.ClientError) as caught:
        bad.models.generate_content(model=FLASH, contents=HELLO)
    bad.close()
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    with pytest.raises(errors.ClientError) as limited:
        generate(f"{HELLO} [sim:status=429,retry_after=12]")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    assert limited.value.details["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}
    ]
    with pytest.raises(errors.ServerError) as down:
        generate(f"{HELLO} [sim:status=503]")
    assert down.value.code == 503 and down.value.status == "UNAVAILABLE"
    with pytest.raises(errors.ServerError):
        stream_all(gclient, f"{HELLO} [sim:status=500]")
    with pytest.raises(errors.ClientError, match=r'Unknown name "additional_?properties"'):
        generate(
            HELLO,
            tools=[
                {
                    "function_declarations": [
                        {
                            "name": "f",
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {"a": {"type": "STRING"}},
                                "additional_properties": False,
                            },
                        }
                    ]
                }
            ],
        )
    raw = httpx.post(
        f"{sim_url}/v1beta/models/{FLASH}:generateContent",
        json={"contents": [], "temperature": 1},
        headers={"x-goog-api-key": "sk-sim-x"},
    )
    assert raw.status_code == 400 and 'Unknown name "temperature"' in raw.json()["error"]["message"]
    missing = httpx.post(f"{sim_url}/v1beta/models/{FLASH}:generateContent", json={"contents": []})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


def test_errors_inside_a_stream(gclient: genai.Client) -> None:
    seen: list[str] = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in gclient.models.generate_content_stream(
            model=FLASH, contents=f"{HELLO} [sim:tokens=10,error_after=3]"
        ):
            seen.append(chunk.text or "")
    assert len(seen) == 3 and caught.value.status == "INTERNAL"
    with pytest.raises(Exception, match="incomplete chunked read"):  # a real mid-body drop
        list(
            gclient.models.generate_content_stream(
                model=FLASH, contents=f"{HELLO} [sim:tokens=10,cut_after=2]"
            )
        )


def test_keys_header_query_v1_and_recording(
    sim_url: str, in_thread_sim: Callable[[set[str] | None], str]
) -> None:
    google_style = make_client(sim_url, key="AIzaSyFakeButWellFormed", version=None)  # the SDK's default: v1
    assert google_style.models.generate_content(model=FLASH, contents=HELLO).text
    google_style.close()
    httpx.delete(f"{sim_url}/_sim/requests")
    by_query = httpx.post(
        f"{sim_url}/v1beta/models/{FLASH}:generateContent",
        params={"key": "sk-sim-q"},
        json={"contents": [{"parts": [{"text": HELLO}]}]},
    )
    assert by_query.status_code == 200
    [record] = httpx.get(f"{sim_url}/_sim/requests").json()
    assert record["path"] == f"/v1beta/models/{FLASH}:generateContent" and record["query"] == "key=sk-sim-q"
    url = in_thread_sim({"AIza-good"})
    for key, ok in (("AIza-good", True), ("AIza-bad", False), ("sk-sim-test", False)):
        client = make_client(url, key=key)
        if ok:
            assert client.models.generate_content(model=FLASH, contents=HELLO).text
        else:
            with pytest.raises(errors.ClientError, match="API_KEY_INVALID"):
                client.models.generate_content(model=FLASH, contents=HELLO)
        client.close()
    recorded = httpx.get(f"{url}/_sim/requests").json()
    assert [r["headers"]["x-goog-api-key"] for r in recorded] == ["AIza-good", "AIza-bad", "sk-sim-test"]


def test_malformed_bodies(sim_url: str, gclient: genai.Client) -> None:
    whole = httpx.post(
        f"{sim_url}/v1beta/models/{FLASH}:generateContent",
        headers={"x-goog-api-key": "sk-sim-test"},
        json={"contents": [{"parts": [{"text": f"{HELLO} [sim:malformed=1]"}]}]},
    )
    assert whole.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(whole.text)
    with httpx.stream(
        "POST",
        f"{sim_url}/v1beta/models/{FLASH}:streamGenerateContent?alt=sse",
        headers={"x-goog-api-key": "sk-sim-test"},
        json={"contents": [{"parts": [{"text": f"{HELLO} [sim:malformed=1,tokens=3]"}]}]},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[1] == 'data: {"candidates": ['
    assert len(lines) == 3 + 1 + 1
