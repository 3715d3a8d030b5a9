"""A Responses API body -> an OpenAI chat body (the canonical request's shape), purely.

Each field is mapped (docs/providers.md, "Responses API"), ignored because it changes nothing we
produce or bill (`client_metadata`, `include` except encrypted reasoning, `store: false`), left
out and named in `omitted` (built-in tools such as `web_search`, which no upstream runs for us,
and fields we cannot honour but whose absence changes nothing billed: the route names them in a
response header, because agent CLIs always send some and a refusal would stop them), or refused
with a clear 400 when it needs state this gateway does not keep (`previous_response_id`,
`store: true`, `conversation`, `background`, stored prompts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.responses.items import chat_messages, join_name
from nemorouter.frontdoors.service_tier import check_service_tier
from nemorouter.providers.canonical import RESPONSES_PASSTHROUGH

# What needs responses stored by the gateway: refused (400) with the stateless alternative.
STATEFUL = {
    "previous_response_id": "previous_response_id",
    "conversation": "conversation",
    "prompt": "stored prompts (`prompt`)",
}
# Responses fields carried into the chat body under the same name.
SAME_NAME = (
    "temperature",
    "top_p",
    "metadata",
    "prompt_cache_key",
    "safety_identifier",
    "user",
    "service_tier",
)
# Fields that change nothing we produce or bill; read where they matter, never forwarded.
QUIET = frozenset(
    {"model", "input", "instructions", "stream", "store", "include", "client_metadata", "stream_options"}
    | {"background", *STATEFUL}  # refused when set (`_refuse_stateful`)
)
MAPPED = frozenset(
    {"tools", "tool_choice", "parallel_tool_calls", "reasoning", "text", "max_output_tokens", "truncation"}
)
STATELESS_HINT = "send the whole conversation as `input`, with `store: false`"


@dataclass(slots=True)
class ResponsesRequest:
    """A Responses request, translated. `chat` is the chat body for the gateway; the rest is
    what the answer needs back: the fields a Response object echoes, the namespaced functions
    (chat name -> (namespace, name)), and whether reasoning comes back as `encrypted_content`."""

    chat: dict[str, Any]
    echo: dict[str, Any]
    omitted: list[str] = field(default_factory=list)
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    encrypted_reasoning: bool = False


def translate(body: dict[str, Any]) -> ResponsesRequest:
    """The chat body and echo for a Responses `body` (already parsed as a JSON object)."""
    _refuse_stateful(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` must be a non-empty string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("`stream` must be a boolean")
    omitted = [name for name in body if name not in QUIET and name not in MAPPED and name not in SAME_NAME]
    tools, namespaced, left_out = function_tools(body.get("tools"))
    omitted += left_out
    flat_name = {spec: flat for flat, spec in namespaced.items()}
    messages = chat_messages(body.get("input"), flat_name)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("`instructions` must be a string")
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("stream") is True:
        chat["stream"] = True
    _check_echoed(body)
    check_service_tier(body)
    for name in SAME_NAME:
        if body.get(name) is not None:
            chat[name] = body[name]
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest("`max_output_tokens` must be a positive integer")
        chat["max_completion_tokens"] = limit
    if tools:
        chat["tools"] = tools
        choice = tool_choice(body.get("tool_choice"), {t["function"]["name"] for t in tools}, flat_name)
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    _reasoning(body.get("reasoning"), chat)
    omitted += _text(body.get("text"), chat)
    if body.get("truncation") not in (None, "disabled"):
        omitted.append("truncation")  # "auto" may drop context; we never do, which bills no more
    include = body.get("include")
    if include is not None and not isinstance(include, list):
        raise InvalidRequest("`include` must be a list")
    echo = {
        "model": model,
        "instructions": instructions,
        # The tools the model was offered: the client's function and namespace tools, not the left-out ones.
        "tools": [t for t in body.get("tools") or [] if t.get("type") in ("function", "namespace")],
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "metadata": body.get("metadata"),
        "max_output_tokens": limit,
        "reasoning": body.get("reasoning"),
        "text": body.get("text"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "store": False,
    }
    encrypted = "reasoning.encrypted_content" in (include or [])
    # What only an upstream that speaks this API natively reads; its presence asks for that wire.
    native: dict[str, Any] = {"include": [name for name in include or () if isinstance(name, str)]}
    if isinstance(body.get("reasoning"), dict):
        native["reasoning"] = body["reasoning"]
    chat[RESPONSES_PASSTHROUGH] = native
    return ResponsesRequest(chat, echo, omitted, namespaced, encrypted)


def _check_echoed(body: dict[str, Any]) -> None:
    """The fields a Response echoes must have the types the Response gives them (else the
    client's own SDK could not read our answer)."""
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise InvalidRequest(f"`{name}` must be a number")
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise InvalidRequest("`metadata` must be an object of strings")
    if body.get("parallel_tool_calls") is not None and not isinstance(body["parallel_tool_calls"], bool):
        raise InvalidRequest("`parallel_tool_calls` must be a boolean")


def _refuse_stateful(body: dict[str, Any]) -> None:
    for name, what in STATEFUL.items():
        if body.get(name) is not None:
            raise InvalidRequest(
                f"{what} needs responses stored by the gateway, which it does not keep; {STATELESS_HINT}"
            )
    if body.get("store") is True:
        raise InvalidRequest(
            f"`store: true` is not supported: this gateway keeps no responses; {STATELESS_HINT}"
        )
    if body.get("background") is True:
        raise InvalidRequest("`background: true` needs stored responses; call without it (or stream)")


def _function(tool: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise InvalidRequest(f"`{where}.name` is required")
    return {"type": "function", "function": function}


def function_tools(value: Any) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]], list[str]]:
    """Chat's function tools for the Responses `tools`: function tools as they are, each
    `namespace` group's functions under one-word names (`items.join_name`), and the names of
    the tools left out (built-in tools run by OpenAI's servers, e.g. `tools.web_search`)."""
    if value is None:
        return [], {}, []
    if not isinstance(value, list):
        raise InvalidRequest("`tools` must be a list")
    tools: list[dict[str, Any]] = []
    namespaced: dict[str, tuple[str, str]] = {}
    left_out: list[str] = []
    for i, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            tools.append(_function(tool, str(tool.get("name")), f"tools[{i}]"))
        elif kind == "namespace":
            namespace, members = tool.get("name"), tool.get("tools")
            if not isinstance(namespace, str) or not namespace or not isinstance(members, list):
                raise InvalidRequest(f"`tools[{i}]`: a namespace needs a `name` and a list of `tools`")
            for k, member in enumerate(members):
                where = f"tools[{i}].tools[{k}]"
                if not isinstance(member, dict) or member.get("type") != "function":
                    left_out.append(
                        f"tools.{namespace}.{member.get('name') if isinstance(member, dict) else k}"
                    )
                    continue
                flat = join_name(namespace, str(member.get("name")))
                namespaced[flat] = (namespace, str(member.get("name")))
                tools.append(_function(member, flat, where))
        elif isinstance(kind, str):
            name = tool.get("name")
            left_out.append(
                f"tools.{name}" if kind == "custom" and isinstance(name, str) else f"tools.{kind}"
            )
        else:
            raise InvalidRequest(f"`tools[{i}].type` is required")
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("`tools`: two functions have the same name")
    return tools, namespaced, left_out


def tool_choice(value: Any, names: set[str], flat_name: dict[tuple[str, str], str]) -> Any:
    """Chat's tool_choice; a choice that names a tool we left out falls back to `auto`."""
    if value is None or value in ("auto", "none", "required"):
        return value
    if not isinstance(value, dict):
        raise InvalidRequest("`tool_choice` must be auto, none, required or an object")
    kind = value.get("type")
    if kind == "function":
        name = _named(value, flat_name)
        return {"type": "function", "function": {"name": name}} if name in names else "auto"
    if kind == "allowed_tools":
        mode, allowed = value.get("mode"), value.get("tools")
        if mode not in ("auto", "required") or not isinstance(allowed, list):
            raise InvalidRequest("`tool_choice.allowed_tools` needs a mode (auto or required) and `tools`")
        chosen = [n for n in (_named(t, flat_name) for t in allowed if isinstance(t, dict)) if n in names]
        tools = [{"type": "function", "function": {"name": n}} for n in chosen]
        return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}} if tools else "auto"
    return "auto"  # a built-in tool (e.g. {"type": "web_search"}) that no upstream runs for us


def _named(choice: dict[str, Any], flat_name: dict[tuple[str, str], str]) -> str:
    name, namespace = choice.get("name"), choice.get("namespace")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("`tool_choice` names a function without `name`")
    if isinstance(namespace, str) and namespace:
        return flat_name.get((namespace, name), join_name(namespace, name))
    return name


def _reasoning(value: Any, chat: dict[str, Any]) -> None:
    """`reasoning.effort` is chat's `reasoning_effort`, which each adapter maps to its provider's
    thinking control; `summary` has no chat field: whatever reasoning text the upstream returns
    comes back as the reasoning item's summary."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidRequest("`reasoning` must be an object")
    effort = value.get("effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise InvalidRequest("`reasoning.effort` must be a string")
        chat["reasoning_effort"] = effort


def _text(value: Any, chat: dict[str, Any]) -> list[str]:
    """`text.format` -> `response_format`; `text.verbosity` passes unless it is the default."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise InvalidRequest("`text` must be an object")
    fmt = value.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is not None and kind not in ("text", "json_object", "json_schema"):
        raise InvalidRequest("`text.format.type` must be text, json_object or json_schema")
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        assert isinstance(fmt, dict)
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not name or not isinstance(schema, dict):
            raise InvalidRequest("`text.format` json_schema needs a `name` and a `schema` object")
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    verbosity = value.get("verbosity")
    if verbosity not in (None, "medium"):
        chat["verbosity"] = verbosity
    return [f"text.{k}" for k in value if k not in ("format", "verbosity")]
