"""The Responses front door's request translation: a Responses body -> the canonical chat body.

Bodies are written as the openai SDK and Codex CLI send them; each translated body is also fed to
the real Anthropic and Gemini request adapters, so what this door produces is shown to be
something every upstream format accepts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.responses.reasoning import encode_blocks
from nemorouter.frontdoors.responses.request import translate
from nemorouter.providers import openai_wire
from nemorouter.providers.anthropic_request import messages_body
from nemorouter.providers.gemini_request import gemini_body
from nemorouter.providers.openai_responses_request import responses_body
from nemorouter.providers.types import Upstream

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
PDF = "data:application/pdf;base64,JVBERi0xLjQK"
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a command",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    "strict": False,
}


def codex_body(**extra: Any) -> dict[str, Any]:
    """What Codex CLI sends (`wire_api = "responses"`): instructions, a function tool, a namespace
    of MCP tools, the built-in web_search, store false and encrypted reasoning."""
    return {
        "model": "openai/gpt-4o-mini",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}
        ],
        "tools": [
            SHELL,
            {
                "type": "namespace",
                "name": "mcp__docs",
                "description": "Docs server",
                "tools": [
                    {"type": "function", "name": "search", "parameters": {"type": "object", "properties": {}}}
                ],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "thread-1",
        "client_metadata": {"originator": "codex_cli_rs"},
        **extra,
    }


def test_a_string_input_is_one_user_message() -> None:
    request = translate(
        {"model": "m", "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 50}
    )
    assert request.chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        "max_completion_tokens": 50,
        "responses_passthrough": {"include": []},  # a Responses client: for a native upstream
    }
    assert request.omitted == []
    assert request.echo["instructions"] == "Be brief."
    assert request.echo["max_output_tokens"] == 50


def test_codex_request_maps_every_field_and_names_what_it_left_out() -> None:
    request = translate(codex_body())
    chat = request.chat
    assert chat["messages"][0] == {"role": "system", "content": "You are a coding agent."}
    assert chat["messages"][1] == {"role": "user", "content": [{"type": "text", "text": "list files"}]}
    assert [t["function"]["name"] for t in chat["tools"]] == ["shell", "mcp__docs__search"]
    assert chat["tools"][0]["function"]["parameters"] == SHELL["parameters"]
    assert chat["tools"][0]["function"]["strict"] is False
    assert chat["tool_choice"] == "auto"
    assert chat["parallel_tool_calls"] is False
    assert chat["reasoning_effort"] == "medium"
    assert chat["prompt_cache_key"] == "thread-1"
    assert chat["stream"] is True
    for absent in ("store", "include", "client_metadata", "reasoning", "instructions", "input"):
        assert absent not in chat
    assert request.omitted == ["tools.web_search"]
    assert [t["type"] for t in request.echo["tools"]] == ["function", "namespace"]
    assert request.namespaced == {"mcp__docs__search": ("mcp__docs", "search")}
    assert request.encrypted_reasoning is True


@pytest.mark.parametrize("model_max", [2048, 32000])
def test_codex_request_is_accepted_by_the_anthropic_and_gemini_adapters(model_max: int) -> None:
    chat = translate(codex_body()).chat
    anthropic = messages_body(chat, "claude-sonnet-4-5", model_max)
    assert anthropic["system"] == [{"type": "text", "text": "You are a coding agent."}]
    assert anthropic["thinking"]["type"] == "enabled"
    assert {t["name"] for t in anthropic["tools"]} == {"shell", "mcp__docs__search"}
    assert anthropic["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    gemini = gemini_body(chat, model_max)
    names = [d["name"] for d in gemini["tools"][0]["functionDeclarations"]]
    assert names == ["shell", "mcp__docs__search"]
    assert gemini["generationConfig"]["thinkingConfig"]["thinkingBudget"] > 0


def test_a_tool_loop_gathers_one_assistant_turn_and_answers_each_call() -> None:
    thinking = [{"type": "thinking", "thinking": "Need the files.", "signature": "sig=="}]
    items = [
        {"role": "user", "content": "list files"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encode_blocks(thinking)},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command":"ls"}'},
        {
            "type": "function_call",
            "call_id": "call_2",
            "name": "search",
            "namespace": "mcp__docs",
            "arguments": "{}",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\nb.txt"},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [{"type": "input_text", "text": "none"}],
        },
    ]
    chat = translate(codex_body(input=items)).chat
    assistant = chat["messages"][2]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "Looking."
    assert assistant["thinking_blocks"] == thinking
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["shell", "mcp__docs__search"]
    assert assistant["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "shell", "arguments": '{"command":"ls"}'},
    }
    assert chat["messages"][3:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
        {"role": "tool", "tool_call_id": "call_2", "content": "none"},
    ]
    # Anthropic gets the signed thinking back before the tool calls, as its tool loops require.
    anthropic = messages_body(chat, "claude-sonnet-4-5", 32000)
    turn = anthropic["messages"][1]
    assert [b["type"] for b in turn["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert turn["content"][0]["signature"] == "sig=="
    gemini_body(chat, 32000)  # and Gemini accepts the same loop


def test_reasoning_we_did_not_write_rides_only_for_a_native_responses_upstream() -> None:
    """OpenAI's own encrypted reasoning is carried as sent on the canonical request; chat
    upstreams (OpenAI's Chat Completions, Anthropic, Gemini) never get it."""
    opaque = {"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": "gAAAAB-openai-opaque"}
    items = [{"role": "user", "content": "hi"}, opaque, {"role": "assistant", "content": "hello"}]
    chat = translate({"model": "m", "input": items}).chat
    assert chat["messages"][1] == {"role": "assistant", "content": "hello", "responses_reasoning": [opaque]}
    upstream = Upstream("gpt-4o-mini", "https://api.openai.com/v1", "sk-x")
    assert b"gAAAAB" not in openai_wire.chat_request(chat, upstream).body
    assert "gAAAAB" not in json.dumps(messages_body(chat, "claude-sonnet-4-5", 32000))
    assert "gAAAAB" not in json.dumps(gemini_body(chat, 32000))


def test_images_and_files_become_chat_parts() -> None:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": PNG, "detail": "low"},
        {"type": "input_file", "filename": "a.pdf", "file_data": PDF},
    ]
    chat = translate({"model": "m", "input": [{"role": "user", "content": content}]}).chat
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "file", "file": {"file_data": PDF, "filename": "a.pdf"}},
    ]
    messages_body(chat, "claude-sonnet-4-5", 1024)
    gemini_body(chat, 1024)


def test_text_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fmt = {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
    chat = translate({"model": "m", "input": "x", "text": {"format": fmt, "verbosity": "medium"}}).chat
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }
    assert "verbosity" not in chat  # the default changes nothing: not sent to upstreams without it
    chat = translate({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}).chat
    assert chat["response_format"] == {"type": "json_object"}
    chat = translate(
        {"model": "m", "input": "x", "text": {"format": {"type": "text"}, "verbosity": "low"}}
    ).chat
    assert "response_format" not in chat
    assert chat["verbosity"] == "low"


def test_sampling_and_identifiers_pass_under_their_chat_names() -> None:
    body = {
        "model": "m",
        "input": "x",
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"run": "7"},
        "safety_identifier": "u-1",
        "user": "u-1",
    }
    chat = translate(body).chat
    assert {k: chat[k] for k in ("temperature", "top_p", "metadata", "safety_identifier", "user")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"run": "7"},
        "safety_identifier": "u-1",
        "user": "u-1",
    }


def test_tool_choice_forms() -> None:
    body = codex_body(tool_choice={"type": "function", "name": "shell"})
    assert translate(body).chat["tool_choice"] == {"type": "function", "function": {"name": "shell"}}
    body = codex_body(tool_choice={"type": "function", "name": "search", "namespace": "mcp__docs"})
    assert translate(body).chat["tool_choice"] == {
        "type": "function",
        "function": {"name": "mcp__docs__search"},
    }
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "shell"}]}
    assert translate(codex_body(tool_choice=allowed)).chat["tool_choice"] == {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "shell"}}]},
    }
    # A choice of a tool that was left out falls back to auto, never a refusal.
    assert translate(codex_body(tool_choice={"type": "web_search"})).chat["tool_choice"] == "auto"
    assert translate(codex_body(tool_choice="required")).chat["tool_choice"] == "required"


def test_only_builtin_tools_leave_no_tools_and_no_tool_choice() -> None:
    body = {
        "model": "m",
        "input": "x",
        "tools": [{"type": "web_search"}, {"type": "custom", "name": "apply_patch"}],
        "tool_choice": "required",
        "parallel_tool_calls": True,
    }
    request = translate(body)
    assert "tools" not in request.chat and "tool_choice" not in request.chat
    assert "parallel_tool_calls" not in request.chat
    assert request.omitted == ["tools.web_search", "tools.apply_patch"]


def test_unknown_fields_are_left_out_and_named() -> None:
    request = translate(
        {"model": "m", "input": "x", "truncation": "auto", "top_logprobs": 2, "background": False}
    )
    assert request.omitted == ["top_logprobs", "truncation"]
    assert "top_logprobs" not in request.chat and "truncation" not in request.chat


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store: true"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
    ],
)
def test_stateful_requests_are_refused_naming_the_alternative(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate({"model": "m", "input": "x", **extra})
    assert caught.value.status == 400
    assert needle in caught.value.message
    if needle != "background":
        assert "send the whole conversation as `input`, with `store: false`" in caught.value.message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": "x"}, "`model`"),
        ({"model": "m"}, "`input`"),
        ({"model": "m", "input": []}, "`input`"),
        ({"model": "m", "input": ["x"]}, "`input[0]`"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "`input[0].role`"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "item references"),
        ({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1"}]}, "'web_search_call'"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "file_id",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_url": "u"}]}]},
            "file_url",
        ),
        ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "call_id"),
        ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "output"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "x", "stream": "yes"}, "stream"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}, "name"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"model": "m", "input": "x", "reasoning": {"effort": 3}}, "reasoning.effort"),
        ({"model": "m", "input": "x", "tools": [SHELL, SHELL]}, "same name"),
        ({"model": "m", "input": "x", "tools": [{"name": "f"}]}, "tools[0].type"),
        ({"model": "m", "input": "x", "instructions": ["x"]}, "instructions"),
        ({"model": "m", "input": "x", "temperature": "hot"}, "temperature"),
        ({"model": "m", "input": "x", "top_p": True}, "top_p"),
        ({"model": "m", "input": "x", "metadata": {"run": 7}}, "metadata"),
        ({"model": "m", "input": "x", "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ],
)
def test_malformed_requests_get_a_clear_400(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(body)
    assert needle in caught.value.message


def test_openai_reasoning_items_keep_their_place_on_the_way_to_a_native_upstream() -> None:
    """OpenAI wants each reasoning item sent back right before the item that followed it; the
    canonical request keeps that order, and the Responses adapter writes it back."""
    r1 = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA1"}
    r2 = {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAA2"}
    items = [
        {"role": "user", "content": "fix it"},
        r1,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        r2,
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]
    chat = translate({"model": "m", "input": items, "store": False}).chat
    upstream = Upstream("gpt-5", "https://api.openai.com/v1", "sk-x", config={"responses_api": True})
    sent = responses_body(chat, upstream)["input"]
    assert [(i["type"], i.get("id") or i.get("call_id") or i.get("role")) for i in sent] == [
        ("message", "user"),
        ("reasoning", "rs_1"),
        ("message", "assistant"),
        ("reasoning", "rs_2"),
        ("function_call", "c1"),
        ("function_call_output", "c1"),
    ]
    assert sent[1] == r1 and sent[3] == r2


@pytest.mark.parametrize("tier", ["priority", "flex", "scale"])
def test_a_service_tier_priced_apart_from_the_list_is_refused(tier: str) -> None:
    with pytest.raises(InvalidRequest, match="service_tier"):
        translate({"model": "a/m", "input": "hi", "service_tier": tier})


def test_a_standard_service_tier_is_carried() -> None:
    assert translate({"model": "a/m", "input": "hi", "service_tier": "auto"}).chat["service_tier"] == "auto"
