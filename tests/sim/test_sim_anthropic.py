"""The sim's Anthropic Messages route through the official `anthropic` SDK: shapes, usage, tools,
thinking, caps, stop sequences, validation and errors (proof the sim speaks the real format)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, TextBlock, ThinkingBlock, ToolUseBlock

WORDS = re.compile(r"^[a-z]+( [a-z]+)*$")
HELLO: list[Any] = [{"role": "user", "content": "Hello, world!"}]  # Hello , world ! -> 4 tokens
HELLO_INPUT = 3 + 3 + 4  # priming + one turn's overhead + its text
SYSTEM = "Be brief."  # Be brief . -> 3 tokens, plus one turn's overhead

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# json.dumps([WEATHER]) hand-counted: 16 words and 50 quotes/braces/brackets/colons/commas.
WEATHER_TOKENS = 66

Create = Callable[..., Message]


@pytest.fixture(scope="module")
def claude(sim_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim_url, api_key="sk-sim-test", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def create(claude: anthropic.Anthropic) -> Create:
    """`messages.create` with a default model and max_tokens (tests pass plain dicts)."""

    def call(**kwargs: Any) -> Message:
        kwargs.setdefault("model", "claude-sonnet-5")
        kwargs.setdefault("max_tokens", 1000)
        message: Message = claude.messages.create(**kwargs)
        return message

    return call


def _post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    base = {"x-api-key": "sk-sim-test", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{url}/v1/messages", json=body, headers={**base, **headers}, timeout=10)


def _text(message: Message) -> str:
    return "".join(b.text for b in message.content if isinstance(b, TextBlock))


def test_text_message_shape_and_usage(create: Create) -> None:
    m = create(messages=HELLO)
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == "claude-sonnet-5" and m.stop_reason == "end_turn" and m.stop_sequence is None
    assert len(m.content) == 1 and isinstance(m.content[0], TextBlock)
    words = _text(m).split(" ")
    assert WORDS.match(_text(m)) and 8 <= len(words) <= 31
    assert m.usage.input_tokens == HELLO_INPUT and m.usage.output_tokens == len(words)
    assert m.usage.cache_read_input_tokens == 0 and m.usage.cache_creation_input_tokens == 0
    assert m.usage.cache_creation is not None and m.usage.cache_creation.ephemeral_1h_input_tokens == 0


def test_same_request_same_reply_and_system_counts_as_prompt(create: Create) -> None:
    first, again = create(messages=HELLO), create(messages=HELLO)
    assert _text(first) == _text(again)
    with_system = create(messages=HELLO, system=SYSTEM)
    assert with_system.usage.input_tokens == HELLO_INPUT + 3 + 3
    blocks = create(
        messages=HELLO, system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    )
    assert blocks.usage.input_tokens == HELLO_INPUT + 3 + 3


def test_cache_usage_directives_in_anthropic_conventions(create: Create) -> None:
    text = "Cache me [sim:cached=5,cache_write=4,cache_write_1h=3]"
    # Cache me [ sim : cached = 5 , cache_write = 4 , cache_write_1h = 3 ] -> 17 tokens
    total = 3 + 3 + 17
    u = create(messages=[{"role": "user", "content": text}]).usage
    assert u.cache_read_input_tokens == 5
    assert u.cache_creation_input_tokens == 7
    assert u.cache_creation is not None
    assert (u.cache_creation.ephemeral_5m_input_tokens, u.cache_creation.ephemeral_1h_input_tokens) == (4, 3)
    assert u.input_tokens == total - 5 - 7  # input_tokens excludes cache reads and writes


def test_cache_counts_never_exceed_the_prompt(create: Create) -> None:
    u = create(messages=[{"role": "user", "content": "x [sim:cached=9999,cache_write_1h=50]"}]).usage
    assert u.input_tokens == 0 and u.cache_creation_input_tokens == 0
    assert u.cache_read_input_tokens == 3 + 3 + 12  # x [ sim : cached = 9999 , cache_write_1h = 50 ]


def test_max_tokens_caps_output(create: Create) -> None:
    m = create(messages=HELLO, max_tokens=5)
    assert m.stop_reason == "max_tokens" and len(_text(m).split(" ")) == 5 and m.usage.output_tokens == 5


def test_stop_sequences_end_the_text(create: Create) -> None:
    words = _text(create(messages=HELLO, extra_headers={"x-sim": "tokens=20"})).split(" ")
    stop = words[6]
    m = create(messages=HELLO, stop_sequences=[stop], extra_headers={"x-sim": "tokens=20"})
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    kept = words[: words.index(stop)]
    assert _text(m) == " ".join(kept) and m.usage.output_tokens == len(kept)


def test_tool_use_then_text_after_the_tool_result(create: Create) -> None:
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]  # 4 tokens
    m = create(messages=question, tools=[WEATHER])
    assert m.stop_reason == "tool_use" and len(m.content) == 1
    call = m.content[0]
    assert isinstance(call, ToolUseBlock) and call.name == "get_weather" and call.id.startswith("toolu_")
    assert isinstance(call.input, dict) and set(call.input) == {"city"}
    assert m.usage.input_tokens == 3 + 3 + 4 + WEATHER_TOKENS
    follow = [
        *question,
        {"role": "assistant", "content": [call.model_dump(include={"type", "id", "name", "input"})]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 C"}]},
    ]
    answer = create(messages=follow, tools=[WEATHER])
    assert answer.stop_reason == "end_turn" and WORDS.match(_text(answer))
    # a directive in the question still applies once the last user turn is only tool results
    asked = [{"role": "user", "content": "Weather? [sim:tokens=3]"}]
    call = create(messages=asked, tools=[WEATHER]).content[0]
    assert isinstance(call, ToolUseBlock)
    result = [{"type": "tool_result", "tool_use_id": call.id, "content": "21 C"}]
    turns = [
        *asked,
        {"role": "assistant", "content": [call.model_dump(include={"type", "id", "name", "input"})]},
    ]
    short = create(messages=[*turns, {"role": "user", "content": result}], tools=[WEATHER])
    assert len(_text(short).split(" ")) == 3
    forced = create(messages=question, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    assert isinstance(forced.content[0], ToolUseBlock)
    assert create(messages=question, tools=[WEATHER], tool_choice={"type": "none"}).stop_reason == "end_turn"


def test_thinking_block_counts_in_output(create: Create) -> None:
    m = create(messages=[{"role": "user", "content": "Think [sim:thinking=7,tokens=4]"}])
    thinking, text = m.content
    assert (
        isinstance(thinking, ThinkingBlock) and len(thinking.thinking.split(" ")) == 7 and thinking.signature
    )
    assert isinstance(text, TextBlock) and len(text.text.split(" ")) == 4
    assert m.usage.output_tokens == 11
    # The SDK speaks a newer API version, which breaks out the thinking tokens.
    assert m.usage.output_tokens_details is not None and m.usage.output_tokens_details.thinking_tokens == 7
    enabled = create(messages=HELLO, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024})
    assert isinstance(enabled.content[0], ThinkingBlock)


def test_classic_version_has_no_thinking_breakdown(sim_url: str) -> None:
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi [sim:thinking=3]"}]}
    usage = _post(sim_url, body).json()["usage"]
    assert usage["output_tokens"] >= 3 and "output_tokens_details" not in usage


def test_images_and_documents_count_fixed_tokens(create: Create) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    m = create(messages=[{"role": "user", "content": [image, pdf, {"type": "text", "text": "What?"}]}])
    assert m.usage.input_tokens == 3 + 3 + 85 + 200 + 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "m", "messages": HELLO}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 10, "messages": HELLO, "stream_options": {}}, "Extra inputs"),
        ({"model": "m", "max_tokens": 10, "messages": HELLO, "temperature": 1.5}, "temperature"),
        ({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": ""}]}, "non-empty"),
        (
            {
                "model": "m",
                "max_tokens": 1000,
                "messages": HELLO,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
            "budget_tokens",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}
                ],
            },
            "tool_result",
        ),
    ],
)
def test_requests_the_real_api_refuses_are_400(sim_url: str, body: dict[str, Any], message: str) -> None:
    response = _post(sim_url, body)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_the_sdk_sees_a_400_as_bad_request(create: Create) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        create(messages=HELLO, extra_body={"temperature": 1.5})
    assert exc.value.type == "invalid_request_error"


def test_missing_version_header_is_400(sim_url: str) -> None:
    response = httpx.post(f"{sim_url}/v1/messages", json={}, headers={"x-api-key": "sk-sim-test"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_key_by_x_api_key_or_bearer_and_headers_are_recorded(
    sim_url: str, claude: anthropic.Anthropic
) -> None:
    httpx.delete(f"{sim_url}/_sim/requests")
    body = {"model": "m", "max_tokens": 5, "messages": HELLO}
    assert _post(sim_url, body).status_code == 200
    claude.messages.create(model="m", max_tokens=5, messages=HELLO)
    classic, sdk = httpx.get(f"{sim_url}/_sim/requests").json()
    assert classic["path"] == "/v1/messages" and classic["model"] == "m"
    assert classic["headers"]["x-api-key"] == "sk-sim-test"
    assert classic["headers"]["anthropic-version"] == "2023-06-01"
    assert sdk["authorization"] == "Bearer sk-sim-test" and sdk["headers"]["anthropic-version"] > "2023-06-01"
    assert sdk["body"]["messages"] == HELLO


def test_bad_key_is_401_in_anthropic_shape(
    sim_url: str, in_thread_sim: Callable[[set[str] | None], str]
) -> None:
    for key in ("sk-nemo-v1-abc", "nope"):
        with (
            anthropic.Anthropic(base_url=sim_url, api_key=key, max_retries=0) as c,
            pytest.raises(anthropic.AuthenticationError) as exc,
        ):
            c.messages.create(model="m", max_tokens=5, messages=HELLO)
        assert exc.value.type == "authentication_error"
        assert isinstance(exc.value.body, dict) and exc.value.body["type"] == "error"
    only = in_thread_sim({"sk-only-this"})
    assert _post(only, {"model": "m", "max_tokens": 5, "messages": HELLO}).status_code == 401
    ok = _post(only, {"model": "m", "max_tokens": 5, "messages": HELLO}, **{"x-api-key": "sk-only-this"})
    assert ok.status_code == 200


def test_status_directives_map_to_anthropic_errors(create: Create) -> None:
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        create(messages=[{"role": "user", "content": "hi [sim:status=529]"}])
    assert overloaded.value.status_code == 529 and overloaded.value.type == "overloaded_error"
    assert isinstance(overloaded.value, anthropic.InternalServerError)
    with pytest.raises(anthropic.RateLimitError) as limited:
        create(messages=[{"role": "user", "content": "hi [sim:status=429,retry_after=3]"}])
    assert limited.value.type == "rate_limit_error" and limited.value.response.headers["retry-after"] == "3"
    with pytest.raises(anthropic.InternalServerError) as server:
        create(messages=HELLO, extra_headers={"x-sim": "status=500"})
    assert server.value.type == "api_error"
    with pytest.raises(anthropic.NotFoundError) as missing:
        create(messages=[{"role": "user", "content": "[sim:status=404]"}])
    assert missing.value.type == "not_found_error"
