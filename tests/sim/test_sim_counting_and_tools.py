"""The sim's count endpoints through the official SDKs (anthropic's `messages.count_tokens`,
google-genai's `models.count_tokens`), each equal to the prompt its generate route then reports;
the `tool` directive on every format; Anthropic's `output_config.format`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from google import genai
from google.genai import types
from openai import OpenAI

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
NOW = {"name": "now", "description": "The time", "input_schema": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def claude(sim_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim_url, api_key="sk-sim-test", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def gemini(sim_url: str) -> genai.Client:
    options = types.HttpOptions(base_url=sim_url, api_version="v1beta")
    return genai.Client(api_key="sk-sim-test", http_options=options)


def test_anthropic_count_tokens_is_the_prompt_it_then_bills(claude: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "Hello, world!"}]
    counted = claude.messages.count_tokens(
        model="claude-sonnet-5", system="Be brief.", messages=messages, tools=[WEATHER]
    )
    made = claude.messages.create(
        model="claude-sonnet-5", max_tokens=50, system="Be brief.", messages=messages, tools=[WEATHER]
    )
    assert counted.input_tokens == made.usage.input_tokens > 0


def test_anthropic_count_tokens_refuses_max_tokens(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        claude.messages.count_tokens(
            model="claude-sonnet-5",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"max_tokens": 5},
        )


def test_gemini_count_tokens_is_the_prompt_it_then_bills(gemini: genai.Client) -> None:
    contents = "Hello, world!"
    counted = gemini.models.count_tokens(model="gemini-2.5-flash", contents=contents)
    made = gemini.models.generate_content(model="gemini-2.5-flash", contents=contents)
    assert made.usage_metadata is not None
    assert counted.total_tokens == made.usage_metadata.prompt_token_count


def test_the_tool_directive_on_anthropic(claude: anthropic.Anthropic) -> None:
    def ask(directive: str) -> Any:
        content = f"What now? [sim: tool={directive}]"
        return claude.messages.create(
            model="claude-sonnet-5",
            max_tokens=200,
            messages=[{"role": "user", "content": content}],
            tools=[WEATHER, NOW],  # type: ignore[list-item]
        )

    assert [b.type for b in ask("none").content] == ["text"]
    assert ask("now").content[-1].name == "now"
    assert ask("unknown").content[-1].name == "get_weather"  # as without the directive


def test_the_tool_directive_on_openai_and_gemini(sim_url: str, gemini: genai.Client) -> None:
    client = OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-test", max_retries=0)
    tools: Any = [
        {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
        for t in (WEATHER, NOW)
    ]
    made = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Time? [sim: tool=now]"}], tools=tools
    )
    assert made.choices[0].message.tool_calls[0].function.name == "now"  # type: ignore[index, union-attr]
    plain = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Time? [sim: tool=none]"}], tools=tools
    )
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].message.content
    declarations = [
        types.FunctionDeclaration(name=t["name"], parameters_json_schema=t["input_schema"])
        for t in (WEATHER, NOW)
    ]
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=declarations)])
    answer = gemini.models.generate_content(
        model="gemini-2.5-flash", contents="Time? [sim: tool=now]", config=config
    )
    assert answer.function_calls and answer.function_calls[0].name == "now"
    text = gemini.models.generate_content(
        model="gemini-2.5-flash", contents="Time? [sim: tool=none]", config=config
    )
    assert not text.function_calls and text.text


def test_anthropic_output_config_format_answers_json(claude: anthropic.Anthropic) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    made = claude.messages.create(
        model="claude-sonnet-5",
        max_tokens=200,
        messages=[{"role": "user", "content": "A city?"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )
    assert made.stop_reason == "end_turn"
    assert isinstance(json.loads(made.content[0].text)["city"], str)  # type: ignore[union-attr]


def test_count_faults_touch_only_the_count(claude: anthropic.Anthropic, gemini: genai.Client) -> None:
    """`count_status` / `count_latency_ms`: a provider that will not count, answering all the same."""
    refused: Any = [{"role": "user", "content": "Hi [sim:count_status=429,retry_after=3]"}]
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.count_tokens(model="claude-sonnet-5", messages=refused)
    assert caught.value.response.headers["retry-after"] == "3"
    assert claude.messages.create(model="claude-sonnet-5", max_tokens=5, messages=refused).content
    with pytest.raises(genai.errors.ServerError):
        gemini.models.count_tokens(model="gemini-2.5-flash", contents="Hi [sim:count_status=503]")
    slow: Any = [{"role": "user", "content": "Hi [sim:count_latency_ms=300]"}]
    began = time.monotonic()
    assert claude.messages.count_tokens(model="claude-sonnet-5", messages=slow).input_tokens > 0
    assert time.monotonic() - began >= 0.3
