"""Messages request parameters -> OpenAI's: sampling, tools and tool_choice, thinking, metadata.

Split from `request` (the content mapping); the choices are documented there.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from nemorouter.providers.types import UnsupportedContent

__all__ = [
    "MalformedRequest",
    "effort_for_budget",
    "is_int",
    "known",
    "map_metadata",
    "map_output_config",
    "map_sampling",
    "map_thinking",
    "map_tools",
]


class MalformedRequest(ValueError):
    """The body is not a well-formed Messages request (a field missing or of the wrong type)."""


def effort_for_budget(budget: int) -> str:
    """OpenAI's reasoning effort for an Anthropic thinking budget (bands: see `request`)."""
    if budget <= 2048:
        return "low"
    return "medium" if budget <= 8192 else "high"


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def known(block: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = sorted(k for k, v in block.items() if k not in allowed and v is not None)
    if extra:
        raise UnsupportedContent(f"{where}: unsupported field(s) {', '.join(extra)}")


def map_sampling(request: dict[str, Any], out: dict[str, Any]) -> None:
    stops = request.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise MalformedRequest("`stop_sequences` must be a list of strings")
        if stops:
            out["stop"] = stops
    for name in ("temperature", "top_p"):
        value = request.get(name)
        if value is not None:
            if not is_number(value):
                raise MalformedRequest(f"`{name}` must be a number")
            out[name] = value
    if request.get("top_k") is not None and not is_int(request["top_k"]):
        raise MalformedRequest("`top_k` must be an integer")


def map_tools(request: dict[str, Any], out: dict[str, Any]) -> None:
    tools, choice = request.get("tools"), request.get("tool_choice")
    if tools is not None and not isinstance(tools, list):
        raise MalformedRequest("`tools` must be a list")
    if tools:
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise MalformedRequest("`tool_choice` must be an object")
    known(choice, frozenset({"type", "name", "disable_parallel_tool_use"}), "tool_choice")
    kind = choice.get("type")
    if kind not in ("auto", "any", "tool", "none"):
        raise MalformedRequest("`tool_choice.type` must be auto, any, tool or none")
    if not tools:
        if kind in ("any", "tool"):
            raise MalformedRequest(f"`tool_choice` {kind} needs `tools`")
        return  # auto and none mean what no tools already mean; OpenAI refuses them without tools
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise MalformedRequest("`tool_choice` of type tool needs a `name`")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise MalformedRequest(f"{where} must be an object")
    if tool.get("type") not in (None, "custom"):
        raise UnsupportedContent(f"{where}: server tool {tool['type']!r} is not supported")
    known(tool, frozenset({"type", "name", "description", "input_schema", "cache_control", "strict"}), where)
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name or not isinstance(schema, dict):
        raise MalformedRequest(f"{where} needs a `name` and an object `input_schema`")
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    out: dict[str, Any] = {"type": "function", "function": function}
    if tool.get("cache_control"):
        out["cache_control"] = tool["cache_control"]
    return out


def map_thinking(thinking: Any, out: dict[str, Any]) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise MalformedRequest("`thinking` must be an object")
    known(thinking, frozenset({"type", "budget_tokens", "display"}), "thinking")
    match thinking.get("type"):
        case "disabled" | "adaptive":
            # Adaptive: the model decides how much to think; other vendors' models get no
            # effort from it (`output_config.effort`, when sent, sets one).
            return
        case "enabled":
            budget = thinking.get("budget_tokens")
            if not is_int(budget) or budget < 1:
                raise MalformedRequest("`thinking.budget_tokens` must be a positive integer")
            out["reasoning_effort"] = effort_for_budget(budget)
        case kind:
            raise UnsupportedContent(
                f"`thinking` of type {kind!r} is not supported (use enabled, adaptive or disabled)"
            )


def map_metadata(metadata: Any, out: dict[str, Any]) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise MalformedRequest("`metadata` must be an object")
    known(metadata, frozenset({"user_id"}), "metadata")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise MalformedRequest("`metadata.user_id` must be a string")
    if user:
        out["user"] = user


# Anthropic's effort levels -> OpenAI's reasoning_effort ("max" has no OpenAI level above high).
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def map_output_config(config: Any, thinking_off: bool, out: dict[str, Any]) -> None:
    """`output_config`: `effort` -> reasoning_effort (unless thinking is disabled), `format`
    (a JSON schema) -> response_format, which every upstream format honours its own way."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise MalformedRequest("`output_config` must be an object")
    effort = config.get("effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise MalformedRequest("`output_config.effort` must be low, medium, high or max")
        if not thinking_off and "reasoning_effort" not in out:
            out["reasoning_effort"] = EFFORTS[effort]
    fmt = config.get("format")
    if fmt is None:
        return
    if (
        not isinstance(fmt, dict)
        or fmt.get("type") != "json_schema"
        or not isinstance(fmt.get("schema"), dict)
    ):
        raise MalformedRequest("`output_config.format` must be {type: json_schema, schema: {...}}")
    out["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
    }
