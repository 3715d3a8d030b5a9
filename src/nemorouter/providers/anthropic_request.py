"""An OpenAI chat body -> an Anthropic Messages body (anthropic-version 2023-06-01), purely.

The rules follow shared/reference/providers.md, "Mapping OpenAI -> Anthropic requests".
What that API version cannot take raises `UnsupportedContent` (the gateway answers 400);
nothing the client asked for is dropped. Fields this module does not know pass through for
Anthropic to judge (e.g. `top_k`), as the front doors promise (frontdoors/openai_chat.py).
"""

from __future__ import annotations

import json
from typing import Any

from nemorouter.providers.anthropic_messages import conversation
from nemorouter.providers.openai_wire import GATEWAY_FIELDS
from nemorouter.providers.output_limit import OUTPUT_LIMIT_FIELDS, output_limit
from nemorouter.providers.types import UnsupportedContent

# The forced tool that carries `response_format` (the 2023-06-01 API has no JSON mode; the
# documented way is one tool whose input is the answer). The response mappers turn its
# input back into `content`, so no client tool may take this name.
JSON_TOOL = "json_output"

# Anthropic's extended thinking: the budget must be >= 1024 and < max_tokens.
THINKING_MIN = 1024
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
NO_THINKING = frozenset({"none", "minimal"})

MAPPED = frozenset(
    {
        "model",
        "messages",
        *OUTPUT_LIMIT_FIELDS,
        "stop",
        "temperature",
        "top_p",
        "user",
        "safety_identifier",
        "reasoning_effort",
        "response_format",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)
# OpenAI fields that do not change what the model writes and have no Anthropic counterpart
# (usage is always reported; `seed` is a best-effort hint; `metadata`/`store` are OpenAI's
# dashboard). Sending them would make Anthropic refuse the request.
IGNORED = frozenset({"stream_options", "store", "metadata", "seed", "prompt_cache_key"})
# OpenAI features Anthropic cannot honour: refused unless left at their default.
DEFAULTS: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logit_bias": None,
    "audio": None,
    "modalities": ["text"],
    "prediction": None,
    "functions": None,
    "function_call": None,
    "web_search_options": None,
    "verbosity": None,
    "service_tier": "auto",
}
_SAME_AS_DEFAULT = {"service_tier": ("auto", "default")}


def messages_body(body: dict[str, Any], model: str, default_max: int) -> dict[str, Any]:
    """The Anthropic request body for an OpenAI chat `body`."""
    _refuse_unsupported(body)
    out: dict[str, Any] = {
        k: v
        for k, v in body.items()
        if k not in MAPPED and k not in IGNORED and k not in DEFAULTS and k not in GATEWAY_FIELDS
    }
    system, turns = conversation(body.get("messages") or [])
    if not turns:
        raise UnsupportedContent("Anthropic needs at least one user or assistant message")
    # The request's one limit (the hold's): Anthropic's max_tokens, which also bounds thinking
    # (budget_tokens must stay below it: `_thinking`).
    max_tokens = output_limit(body, default_max)
    out.update(model=model, max_tokens=max_tokens, messages=turns)
    if system:
        out["system"] = system
    _sampling(body, out)
    _tooling(body, out)
    _thinking(body, out, max_tokens)
    if body.get("stream"):
        out["stream"] = True
    return out


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, default in DEFAULTS.items():
        value = body.get(name)
        if value is None or value == default or value in ({}, []):
            continue
        if value in _SAME_AS_DEFAULT.get(name, ()):
            continue
        raise UnsupportedContent(f"Anthropic does not support `{name}` = {json.dumps(value)[:60]}")


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            raise UnsupportedContent("`temperature` must be a number")
        # OpenAI takes 0-2, Anthropic 0-1: clamp rather than refuse.
        out["temperature"] = min(max(temperature, 0), 1)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}


def _thinking(body: dict[str, Any], out: dict[str, Any], max_tokens: int) -> None:
    effort = body.get("reasoning_effort")
    if effort is None or effort in NO_THINKING:
        return
    if effort not in THINKING_BUDGETS:
        raise UnsupportedContent(
            f"`reasoning_effort` {effort!r} is not supported on Anthropic; use none, minimal, low, medium or high"
        )
    budget = min(THINKING_BUDGETS[effort], max_tokens - 1)
    if budget < THINKING_MIN:
        raise UnsupportedContent(
            f"reasoning on Anthropic needs max_completion_tokens above {THINKING_MIN} (its minimum thinking budget)"
        )
    # Anthropic's extended-thinking rules: temperature only 1, top_p at least 0.95, and the
    # model may not be forced to call a tool (so no response_format either).
    if out.get("temperature", 1) != 1:
        raise UnsupportedContent("with reasoning_effort, Anthropic accepts only temperature 1")
    top_p = out.get("top_p")
    if isinstance(top_p, int | float) and top_p < 0.95:
        raise UnsupportedContent("with reasoning_effort, Anthropic accepts only top_p of 0.95 or more")
    if out.get("tool_choice", {}).get("type") in ("any", "tool"):
        raise UnsupportedContent(
            "with reasoning_effort, Anthropic cannot force a tool call or a response_format"
        )
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}


# ----------------------------------------------------------------------------- tools


def _tooling(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = [_tool(t, i) for i, t in enumerate(body.get("tools") or [])]
    choice = _tool_choice(body.get("tool_choice"), bool(tools))
    fmt = _response_format(body.get("response_format"))
    if fmt is not None and tools:
        # A forced tool would stop the model calling the client's tools (agents such as Codex
        # offer tools with every request, `--output-schema` too): the schema goes as Anthropic's
        # structured output, which leaves them free (json_schema -> `output_config.format`).
        if body["response_format"].get("type") != "json_schema":
            raise UnsupportedContent("Anthropic cannot combine a json_object response_format with tools")
        out["output_config"] = {"format": {"type": "json_schema", "schema": fmt["input_schema"]}}
    elif fmt is not None:
        tools, choice = [fmt], {"type": "tool", "name": JSON_TOOL}
    if not tools:
        return
    # parallel_tool_calls=false is Anthropic's disable_parallel_tool_use (not allowed on `none`).
    if body.get("parallel_tool_calls") is False and (choice or {}).get("type") != "none":
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice


def _tool(tool: Any, i: int) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or tool.get("type", "function") != "function":
        raise UnsupportedContent(f"tools[{i}]: Anthropic takes only function tools")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise UnsupportedContent(f"tools[{i}]: a function needs a name")
    if name == JSON_TOOL:
        raise UnsupportedContent(f"tools[{i}]: the tool name {JSON_TOOL!r} is reserved for response_format")
    out: dict[str, Any] = {"name": name, "input_schema": fn.get("parameters") or {"type": "object"}}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("strict") is True:
        out["strict"] = True
    cache = tool.get("cache_control") or fn.get("cache_control")
    if cache:
        out["cache_control"] = cache
    return out


def _tool_choice(choice: Any, has_tools: bool) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice} if has_tools else None
    if choice == "required":
        mapped: dict[str, Any] = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise UnsupportedContent("`tool_choice.function.name` is required")
        mapped = {"type": "tool", "name": name}
    else:
        raise UnsupportedContent(f"`tool_choice` {json.dumps(choice)[:60]} is not supported on Anthropic")
    if not has_tools:
        raise UnsupportedContent("`tool_choice` forces a tool but `tools` is empty")
    return mapped


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return {
            "name": JSON_TOOL,
            "description": "Answer with a JSON object.",
            "input_schema": {"type": "object"},
        }
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        spec = spec if isinstance(spec, dict) else {}
        schema = spec.get("schema") or {"type": "object"}
        # A tool's input is always a JSON object on Anthropic.
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise UnsupportedContent("on Anthropic, a response_format schema must describe an object")
        description = spec.get("description") or "Answer with JSON matching this schema."
        return {"name": JSON_TOOL, "description": description, "input_schema": schema}
    raise UnsupportedContent(f"`response_format` type {kind!r} is not supported on Anthropic")
