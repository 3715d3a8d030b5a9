"""Chat Completions through the official openai SDK: content, usage, caps, tools, JSON mode, streaming."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel

WORDS = re.compile(r"^[a-z]+( [a-z]+)*$")
HELLO: list[Any] = [{"role": "user", "content": "Hello, world!"}]  # Hello , world ! -> 4 tokens
HELLO_PROMPT = 3 + 3 + 4

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# json.dumps([WEATHER_TOOL]) hand-counted: 69 tokens (17 words, 52 quotes/braces/colons/commas/brackets)
WEATHER_TOOL_TOKENS = 69
WEATHER_MSG: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]  # 4 tokens

Chat = Callable[..., ChatCompletion]  # the `chat` fixture (conftest)
StreamChat = Callable[..., Iterator[ChatCompletionChunk]]  # the `stream` fixture


def _only_call(completion: ChatCompletion) -> ChatCompletionMessageFunctionToolCall:
    calls = completion.choices[0].message.tool_calls or []
    assert len(calls) == 1 and isinstance(calls[0], ChatCompletionMessageFunctionToolCall)
    return calls[0]


def test_non_stream_text_shape_and_usage(chat: Chat) -> None:
    r = chat(model="gpt-4o-mini", messages=HELLO)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "gpt-4o-mini"
    assert r.system_fingerprint == "fp_sim"
    choice = r.choices[0]
    assert (
        choice.finish_reason == "stop"
        and choice.message.role == "assistant"
        and choice.message.refusal is None
    )
    text = choice.message.content or ""
    assert WORDS.match(text)
    words = text.split(" ")
    assert 8 <= len(words) <= 31
    assert r.usage is not None
    assert r.usage.prompt_tokens == HELLO_PROMPT
    assert r.usage.completion_tokens == len(words)
    assert r.usage.total_tokens == HELLO_PROMPT + len(words)
    assert r.usage.prompt_tokens_details and r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details and r.usage.completion_tokens_details.reasoning_tokens == 0


def test_deterministic_and_seeded(chat: Chat) -> None:
    a = chat(model="gpt-4o-mini", messages=HELLO)
    b = chat(model="gpt-4o-mini", messages=HELLO)
    c = chat(model="gpt-4o-mini", messages=HELLO, seed=42)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != c.choices[0].message.content
    assert a.id != b.id


def test_prompt_token_rule_hand_counted(chat: Chat) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},  # 4 -> 7
        {"role": "user", "name": "alice", "content": "What's 2+2?"},  # 7 + name 1 -> 11
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'},
                }
            ],
        },  # add 1 + 13 -> 17
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},  # 1 + 1 -> 5
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Thanks a lot"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            ],
        },  # 3 + 85 + 200 -> 291
    ]
    r = chat(model="gpt-4o-mini", messages=messages)
    assert r.usage is not None and r.usage.prompt_tokens == 3 + 7 + 11 + 17 + 5 + 291


def test_max_tokens_length_and_preference(chat: Chat) -> None:
    r = chat(model="m", messages=HELLO, max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert len((r.choices[0].message.content or "").split(" ")) == 3
    assert r.usage is not None and r.usage.completion_tokens == 3
    r2 = chat(
        model="m",
        messages=HELLO,
        max_tokens=3,
        max_completion_tokens=5,
    )
    assert r2.usage is not None and r2.usage.completion_tokens == 5
    assert (r2.choices[0].message.content or "").startswith(r.choices[0].message.content or "")
    big = chat(model="m", messages=HELLO, max_tokens=1000)
    assert big.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_cap_is_400(chat: Chat, field: str, value: int) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        chat(model="m", messages=HELLO, **{field: value})
    assert exc.value.status_code == 400
    assert isinstance(exc.value.body, dict) and exc.value.body["type"] == "invalid_request_error"


def test_missing_model_and_stream_options_without_stream_are_400(chat: Chat) -> None:
    with pytest.raises(openai.BadRequestError):
        chat(model="", messages=HELLO)
    with pytest.raises(openai.BadRequestError):
        chat(
            model="m",
            messages=HELLO,
            stream_options={"include_usage": True},
        )


def test_stop_sequence(chat: Chat) -> None:
    base = chat(model="m", messages=HELLO)
    words = (base.choices[0].message.content or "").split(" ")
    stop = " " + words[4]
    r = chat(model="m", messages=HELLO, stop=[stop])
    text = r.choices[0].message.content or ""
    assert stop not in text and r.choices[0].finish_reason == "stop"
    cut = text.split(" ")
    assert cut == words[: len(cut)] and len(cut) <= 4
    assert r.usage is not None and r.usage.completion_tokens == len(cut)


def test_n_choices_differ_and_usage_sums(chat: Chat) -> None:
    r = chat(model="m", messages=HELLO, n=3)
    texts = [c.message.content or "" for c in r.choices]
    assert [c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert r.usage is not None and r.usage.completion_tokens == sum(len(t.split(" ")) for t in texts)
    assert r.usage.prompt_tokens == HELLO_PROMPT


def test_stream_equals_non_stream(chat: Chat, stream: StreamChat) -> None:
    whole = chat(model="m", messages=HELLO, n=2)
    chunks = list(stream(model="m", messages=HELLO, n=2, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    texts = ["", ""]
    finishes: dict[int, str | None] = {}
    for c in chunks[:-1]:
        assert c.usage is None
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
                assert not ch.delta.content
    assert texts == [c.message.content for c in whole.choices]
    assert finishes == {0: "stop", 1: "stop"}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert whole.usage is not None and last.usage.model_dump() == whole.usage.model_dump()
    # one chunk per word: the first word bare, later words with one leading space
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].index == 0]
    words = [w for w in contents[1:] if w]
    assert words[0] == words[0].strip() and all(w.startswith(" ") and w[1:].isalpha() for w in words[1:])


def test_stream_without_include_usage_has_no_usage_chunk(stream: StreamChat) -> None:
    chunks = list(stream(model="m", messages=HELLO))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tool_call_non_stream(chat: Chat) -> None:
    r = chat(model="m", messages=WEATHER_MSG, tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = _only_call(r)
    assert re.fullmatch(r"call_[0-9a-f]+", call.id)
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert list(args) == ["city"] and WORDS.match(args["city"])
    assert r.usage is not None
    assert r.usage.prompt_tokens == 3 + 3 + 4 + WEATHER_TOOL_TOKENS
    # get_weather (1) + { " city " : " ... " } (8) + the words of the value
    assert r.usage.completion_tokens == 1 + 8 + len(args["city"].split(" "))


def test_tool_choice_named_none_and_tool_result(chat: Chat) -> None:
    other = {
        "type": "function",
        "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}},
    }
    tools = [WEATHER_TOOL, other]
    named = chat(
        model="m",
        messages=WEATHER_MSG,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "ping"}},
    )
    call = _only_call(named)
    assert call.function.name == "ping" and json.loads(call.function.arguments) == {}
    none = chat(model="m", messages=WEATHER_MSG, tools=tools, tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.tool_calls is None
    followup = [
        *WEATHER_MSG,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "ping", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    after = chat(model="m", messages=followup, tools=tools)
    assert after.choices[0].finish_reason == "stop" and WORDS.match(after.choices[0].message.content or "")
    with pytest.raises(openai.BadRequestError):
        chat(
            model="m",
            messages=WEATHER_MSG,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "x"}},
        )


def test_tool_call_streamed(chat: Chat, stream: StreamChat) -> None:
    whole = chat(model="m", messages=WEATHER_MSG, tools=[WEATHER_TOOL])
    expected = _only_call(whole)
    chunks = list(stream(model="m", messages=WEATHER_MSG, tools=[WEATHER_TOOL]))
    fragments = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert fragments[0].id == expected.id and fragments[0].type == "function"
    assert fragments[0].function and fragments[0].function.name == "get_weather"
    assert len(fragments) > 2 and all(f.id is None for f in fragments[1:])
    arguments = "".join((f.function.arguments or "") for f in fragments if f.function)
    assert arguments == expected.function.arguments
    assert json.loads(arguments)["city"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_json_object_mode(chat: Chat, stream: StreamChat) -> None:
    r = chat(
        model="m",
        messages=HELLO,
        response_format={"type": "json_object"},
    )
    text = r.choices[0].message.content or ""
    value = json.loads(text)
    assert list(value) == ["answer"] and WORDS.match(value["answer"])
    assert r.usage is not None and r.usage.completion_tokens == 8 + len(value["answer"].split(" "))
    streamed = list(stream(model="m", messages=HELLO, response_format={"type": "json_object"}))
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == text


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]
    active: bool


def test_json_schema_parses_with_sdk(client: OpenAI) -> None:
    r = client.chat.completions.parse(model="m", messages=HELLO, response_format=Person)
    person = r.choices[0].message.parsed
    assert isinstance(person, Person) and person.name and len(person.tags) == 1
    text = r.choices[0].message.content or ""
    assert r.usage is not None and r.usage.completion_tokens == len(re.findall(r"\w+|[^\w\s]", text))


def test_json_mode_respects_cap(chat: Chat) -> None:
    r = chat(
        model="m",
        messages=HELLO,
        response_format={"type": "json_object"},
        max_tokens=4,
    )
    assert r.choices[0].message.content == '{"answer"'
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 4
