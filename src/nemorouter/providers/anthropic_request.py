"""An OpenAI chat body -> an Anthropic Messages body (anthropic-version 2023-06-01), purely.

The rules follow shared/reference/providers.md, "Mapping OpenAI -> Anthropic requests".
What that API version cannot take raises `UnsupportedContent` (the gateway answers 400);
nothing the client asked for is dropped. Fields this module does not know pass through for
Anthropic to judge (e.g. `top_k`), as `service.bodies` promises.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nemorouter.providers.openai_wire import GATEWAY_FIELDS
from nemorouter.providers.types import UnsupportedContent

# The forced tool that carries `response_format` (the 2023-06-01 API has no JSON mode; the
# documented way is one tool whose input is the answer). The response mappers turn its
# input back into `content`, so no client tool may take this name.
JSON_TOOL = "json_output"

# Anthropic's extended thinking: the budget must be >= 1024 and < max_tokens.
THINKING_MIN = 1024
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
NO_THINKING = frozenset({"none", "minimal"})

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

MAPPED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
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

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[^,;]*)*),(.*)", re.DOTALL)


def messages_body(body: dict[str, Any], model: str, default_max: int) -> dict[str, Any]:
    """The Anthropic request body for an OpenAI chat `body`."""
    _refuse_unsupported(body)
    out: dict[str, Any] = {
        k: v
        for k, v in body.items()
        if k not in MAPPED and k not in IGNORED and k not in DEFAULTS and k not in GATEWAY_FIELDS
    }
    system, turns = _conversation(body.get("messages") or [])
    if not turns:
        raise UnsupportedContent("Anthropic needs at least one user or assistant message")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max
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
    if out.get("top_p", 1) < 0.95:
        raise UnsupportedContent("with reasoning_effort, Anthropic accepts only top_p of 0.95 or more")
    if out.get("tool_choice", {}).get("type") in ("any", "tool"):
        raise UnsupportedContent("with reasoning_effort, Anthropic cannot force a tool call or a response_format")
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}


# ----------------------------------------------------------------------------- tools


def _tooling(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = [_tool(t, i) for i, t in enumerate(body.get("tools") or [])]
    choice = _tool_choice(body.get("tool_choice"), bool(tools))
    fmt = _response_format(body.get("response_format"))
    if fmt is not None:
        if tools:
            raise UnsupportedContent("Anthropic cannot combine response_format with tools")
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
        return {"name": JSON_TOOL, "description": "Answer with a JSON object.", "input_schema": {"type": "object"}}
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
        schema = spec.get("schema") or {"type": "object"}
        # A tool's input is always a JSON object on Anthropic.
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise UnsupportedContent("on Anthropic, a response_format schema must describe an object")
        description = spec.get("description") or "Answer with JSON matching this schema."
        return {"name": JSON_TOOL, "description": description, "input_schema": schema}
    raise UnsupportedContent(f"`response_format` type {kind!r} is not supported on Anthropic")


# ----------------------------------------------------------------------------- messages


def _conversation(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks (every system/developer message, wherever it stands) and the turns,
    consecutive same-role turns merged (Anthropic alternates user and assistant)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role, content, where = message.get("role"), message.get("content"), f"messages[{i}]"
        match role:
            case "system" | "developer":
                system.extend(_text_blocks(content, where, ("text",)))
            case "user":
                _append(turns, "user", _user_blocks(content, where))
            case "assistant":
                _append(turns, "assistant", _assistant_blocks(message, where))
            case "tool":
                _append(turns, "user", [_tool_result(message, where)])
            case _:
                raise UnsupportedContent(f"{where}: role {role!r} is not supported on Anthropic")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _text(text: Any, part: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    # Anthropic refuses empty text blocks; an empty string carries nothing to keep.
    if not isinstance(text, str) or not text:
        return []
    block: dict[str, Any] = {"type": "text", "text": text}
    if part is not None and part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return [block]


def _text_blocks(content: Any, where: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise UnsupportedContent(f"{where}.content[{j}]: part type {kind!r} is not supported here")
        blocks += _text(part.get("text") if kind == "text" else part.get("refusal"), part)
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        at = f"{where}.content[{j}]"
        match kind:
            case "text":
                blocks += _text(part.get("text"), part)
            case "image_url":
                blocks.append(_image(part, at))
            case "file":
                blocks.append(_document(part, at))
            case "input_audio":
                raise UnsupportedContent(f"{at}: Anthropic does not take audio input")
            case _:
                raise UnsupportedContent(f"{at}: part type {kind!r} is not supported on Anthropic")
    return blocks


def _data_url(url: str, at: str) -> tuple[str, str]:
    match = _DATA_URL.fullmatch(url)
    if match is None or "base64" not in match.group(2).split(";"):
        raise UnsupportedContent(f"{at}: only base64 data URLs are supported")
    return match.group(1).lower(), match.group(3)


def _image(part: dict[str, Any], at: str) -> dict[str, Any]:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise UnsupportedContent(f"{at}: image_url.url is required")
    if url.startswith("data:"):
        mime, data = _data_url(url, at)
        if mime not in IMAGE_TYPES:
            raise UnsupportedContent(f"{at}: Anthropic takes JPEG, PNG, GIF or WebP images, not {mime}")
        source: dict[str, Any] = {"type": "base64", "media_type": mime, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise UnsupportedContent(f"{at}: an image must be a data URL or an http(s) URL")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _document(part: dict[str, Any], at: str) -> dict[str, Any]:
    spec = part.get("file") if isinstance(part.get("file"), dict) else {}
    data = spec.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise UnsupportedContent(f"{at}: Anthropic needs the file inline as a PDF data URL (file_data)")
    mime, payload = _data_url(data, at)
    if mime != "application/pdf":
        raise UnsupportedContent(f"{at}: Anthropic takes PDF files only, not {mime}")
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": mime, "data": payload},
    }
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    # Thinking blocks come back first, unchanged, as Anthropic requires in tool loops
    # (LiteLLM's `thinking_blocks` convention carries them through OpenAI clients).
    blocks = [dict(b) for b in message.get("thinking_blocks") or [] if isinstance(b, dict)]
    blocks += _text_blocks(message.get("content"), where, ("text", "refusal"))
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type", "function") != "function":
            raise UnsupportedContent(f"{where}.tool_calls[{k}]: only function calls are supported")
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": _arguments(fn, where, k)}
        )
    return blocks


def _arguments(fn: dict[str, Any], where: str, k: int) -> dict[str, Any]:
    raw = fn.get("arguments")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}  # a call without parameters; Anthropic wants an (empty) object
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise UnsupportedContent(f"{where}.tool_calls[{k}]: arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise UnsupportedContent(f"{where}.tool_calls[{k}]: arguments must be a JSON object on Anthropic")
    return value


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise UnsupportedContent(f"{where}: a tool message needs tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        block["content"] = _text_blocks(content, where, ("text",))
    return block
