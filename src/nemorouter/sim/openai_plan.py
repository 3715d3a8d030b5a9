"""Reading and validating an OpenAI Chat Completions request into a plan of generated choices.

Kept apart from the HTTP handlers so the same plan drives the non-stream body
and the stream, which is what makes them identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemorouter.sim.content import (
    Reply,
    ToolSpec,
    choice_digest,
    directed_tool,
    json_reply,
    request_digest,
    text_reply,
    tool_reply,
)
from nemorouter.sim.faults import Faults, total_count
from nemorouter.sim.tokens import count_chat_prompt_tokens

MAX_CHOICES = 128


class BadRequest(Exception):
    """A request the real API would refuse with 400; carries the offending ``param``."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadRequest(f"Invalid '{name}': expected an integer greater than 0, got {value!r}.", name)
    return value


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) for s in stops):
        raise BadRequest("Invalid 'stop': expected a string or a list of up to 4 strings.", "stop")
    return stops


def _pick_tool(body: dict[str, Any]) -> ToolSpec | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict)
        and t.get("type", "function") == "function"
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]
    by_name = {f["name"]: ToolSpec(f["name"], f.get("parameters")) for f in reversed(functions)}
    choice = body.get("tool_choice", "auto")
    messages = body["messages"]
    if choice == "none" or (isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"):
        return None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name")
            if name not in by_name:
                raise BadRequest(
                    f"Invalid 'tool_choice': no function named {name!r} in 'tools'.", "tool_choice"
                )
            return by_name[name]
        allowed = (choice.get("allowed_tools") or {}).get("tools") or []
        names = {(a.get("function") or {}).get("name") for a in allowed if isinstance(a, dict)}
        functions = [f for f in functions if f["name"] in names] or functions
    return ToolSpec(functions[0]["name"], functions[0].get("parameters")) if functions else None


def _json_schema(body: dict[str, Any]) -> tuple[bool, Any]:
    """``(json_mode, schema)``; ``schema`` is None for plain ``json_object``."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return False, None
    if fmt.get("type") == "json_object":
        return True, None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return True, schema if isinstance(schema, dict) else {"type": "object"}
    return False, None


@dataclass(frozen=True)
class ChatPlan:
    replies: list[Reply]
    reasoning: int
    usage: dict[str, Any]


def plan_chat(body: dict[str, Any], faults: Faults) -> ChatPlan:
    """Validate the request and generate every choice; raises ``BadRequest``."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Invalid 'messages': expected a non-empty array.", "messages")
    n = body.get("n") if body.get("n") is not None else 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise BadRequest(f"Invalid 'n': expected an integer between 1 and {MAX_CHOICES}.", "n")
    cap = _positive_int(body, "max_completion_tokens")
    max_tokens = _positive_int(body, "max_tokens")
    cap = cap if cap is not None else max_tokens
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise BadRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )
    stops, tool = _stops(body), _pick_tool(body)
    if faults.tool is not None:
        functions = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict)]
        offered = [(f.get("name"), f.get("parameters")) for f in functions if isinstance(f, dict)]
        tool = directed_tool(tool, faults.tool, offered)
    json_mode, schema = _json_schema(body)
    reasoning = min(faults.reasoning, cap) if cap is not None else faults.reasoning
    visible_cap = cap - reasoning if cap is not None else None
    base = request_digest(messages, model, body.get("seed"))
    replies = []
    for index in range(n):
        digest = choice_digest(base, index)
        if tool is not None:
            replies.append(tool_reply(digest, tool, visible_cap))
        elif json_mode:
            replies.append(json_reply(digest, schema, faults.tokens, visible_cap))
        else:
            replies.append(text_reply(digest, faults.tokens, visible_cap, stops))
    prompt = count_chat_prompt_tokens(body)
    completion = sum(r.tokens for r in replies) + reasoning * n
    cached = min(faults.cached, prompt)
    prompt_details: dict[str, int] = {"cached_tokens": cached}
    if faults.cache_write is not None:
        prompt_details["cache_write_tokens"] = min(faults.cache_write, prompt - cached)
    reported_prompt, reported_completion = faults.prompt_count(prompt), faults.output_count(completion)
    usage = {
        "prompt_tokens": reported_prompt,
        "completion_tokens": reported_completion,
        "total_tokens": total_count([reported_prompt, reported_completion], prompt + completion),
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": reasoning * n},
    }
    return ChatPlan(replies, reasoning, usage)
