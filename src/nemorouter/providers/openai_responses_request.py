"""The canonical chat body -> an OpenAI Responses request (`POST {base_url}/responses`), purely.

Used only for requests that carry `RESPONSES_PASSTHROUGH` (a client that spoke the Responses
API) on upstreams that speak it natively (`openai_responses.select`). Each chat field maps to
its Responses field (docs/providers.md, "Responses API"); the passed-through fields (`include`,
`reasoning.summary`) and the client's own reasoning items (`RESPONSES_REASONING`, with OpenAI's
`encrypted_content`) go as the client sent them. The output limit is the hold's, always sent as
`max_output_tokens` (it caps reasoning too); `store` is always false: the gateway keeps no
responses and will not have the upstream keep them for it.
"""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.providers.canonical import RESPONSES_PASSTHROUGH, RESPONSES_REASONING
from nemorouter.providers.output_limit import output_limit
from nemorouter.providers.types import UnsupportedContent, Upstream, UpstreamRequest

# Chat fields a Responses body takes under the same name.
SAME_NAME = (
    "temperature",
    "top_p",
    "metadata",
    "prompt_cache_key",
    "safety_identifier",
    "user",
    "parallel_tool_calls",
)


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise UnsupportedContent(f"{where}: content must be a string or a list of parts")
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise UnsupportedContent(f"{where}: only text parts are accepted here")
        texts.append(part["text"])
    return "".join(texts)


def _input_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "input_text", "text": part["text"]}
    if kind == "image_url" and isinstance(part.get("image_url"), dict):
        image = part["image_url"]
        out: dict[str, Any] = {"type": "input_image", "image_url": image.get("url"), "detail": "auto"}
        if isinstance(image.get("detail"), str):
            out["detail"] = image["detail"]
        return out
    if kind == "file" and isinstance(part.get("file"), dict):
        file = part["file"]
        found = {k: file[k] for k in ("file_data", "filename") if isinstance(file.get(k), str)}
        if "file_data" not in found:
            raise UnsupportedContent(f"{where}: a file part needs `file_data` here")
        return {"type": "input_file", **found}
    raise UnsupportedContent(f"{where}: content part {kind!r} has no Responses input form")


def _assistant_items(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    reasoning = message.get(RESPONSES_REASONING)
    if isinstance(reasoning, list):
        items += [r for r in reasoning if isinstance(r, dict) and r.get("type") == "reasoning"]
    text = _text_of(message.get("content"), where)
    parts: list[dict[str, Any]] = [{"type": "output_text", "text": text, "annotations": []}] if text else []
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        items.append({"type": "message", "role": "assistant", "content": parts})
    if message.get("function_call") is not None:
        raise UnsupportedContent(f"{where}: the legacy `function_call` has no Responses form")
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise UnsupportedContent(f"{where}: only function tool calls are accepted here")
        items.append(
            {
                "type": "function_call",
                "call_id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "arguments": function.get("arguments") if isinstance(function.get("arguments"), str) else "",
            }
        )
    return items


def input_items(messages: Any) -> list[dict[str, Any]]:
    """Chat messages as Responses input items (one assistant turn may become several items)."""
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "assistant":
            items += _assistant_items(message, where)
        elif role == "tool":
            output = _text_of(message.get("content"), where)
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": str(message.get("tool_call_id")),
                    "output": output,
                }
            )
        elif role in ("system", "developer", "user"):
            content = message.get("content")
            if isinstance(content, list):
                content = [_input_part(p, f"{where}.content[{k}]") for k, p in enumerate(content)]
            elif not isinstance(content, str):
                raise UnsupportedContent(f"{where}: content must be a string or a list of parts")
            items.append({"type": "message", "role": role, "content": content})
        else:
            raise UnsupportedContent(f"{where}: role {role!r} has no Responses form")
    return items


def _tool(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict):
        raise UnsupportedContent("only function tools are accepted here")
    out: dict[str, Any] = {"type": "function", "name": function.get("name")}
    for key in ("description", "parameters"):
        if function.get(key) is not None:
            out[key] = function[key]
    # Responses makes function tools strict unless told otherwise; chat's default is not strict.
    out["strict"] = function.get("strict") is True
    return out


def _tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return choice  # auto, none, required
    if choice.get("type") == "function":
        return {"type": "function", "name": (choice.get("function") or {}).get("name")}
    if choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        tools = [
            {"type": "function", "name": (t.get("function") or {}).get("name")}
            for t in allowed.get("tools") or ()
            if isinstance(t, dict)
        ]
        return {"type": "allowed_tools", "mode": allowed.get("mode"), "tools": tools}
    return "auto"


def _text(body: dict[str, Any]) -> dict[str, Any] | None:
    text: dict[str, Any] = {}
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        text["format"] = {"type": "json_object"}
    elif kind == "json_schema":
        assert isinstance(fmt, dict)
        found = fmt.get("json_schema")
        spec: dict[str, Any] = found if isinstance(found, dict) else {}
        keys = ("name", "schema", "strict", "description")
        text["format"] = {"type": "json_schema", **{k: spec[k] for k in keys if spec.get(k) is not None}}
    if body.get("verbosity") is not None:
        text["verbosity"] = body["verbosity"]
    return text or None


def responses_body(body: dict[str, Any], upstream: Upstream) -> dict[str, Any]:
    """The Responses body for the chat `body` (the output limit: the hold's)."""
    native = body.get(RESPONSES_PASSTHROUGH)
    native = native if isinstance(native, dict) else {}
    out: dict[str, Any] = {
        "model": upstream.model,
        "input": input_items(body.get("messages")),
        "max_output_tokens": output_limit(body, upstream.max_output),
        "store": False,
    }
    for name in SAME_NAME:
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("tools"):
        out["tools"] = [_tool(t) for t in body["tools"]]
        if body.get("tool_choice") is not None:
            out["tool_choice"] = _tool_choice(body["tool_choice"])
    text = _text(body)
    if text is not None:
        out["text"] = text
    reasoning: dict[str, Any] = {}
    if isinstance(body.get("reasoning_effort"), str):
        reasoning["effort"] = body["reasoning_effort"]
    asked = native.get("reasoning")
    if isinstance(asked, dict) and isinstance(asked.get("summary"), str):
        reasoning["summary"] = asked["summary"]
    if reasoning:
        out["reasoning"] = reasoning
    include = [name for name in native.get("include") or () if isinstance(name, str)]
    if include:
        out["include"] = include
    if body.get("stream") is True:
        out["stream"] = True
    return out


def responses_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = responses_body(body, upstream)
    headers = {"Authorization": f"Bearer {upstream.secret}", "Content-Type": "application/json"}
    url = upstream.base_url.rstrip("/") + "/responses"
    return UpstreamRequest(url, headers, orjson.dumps(out), bool(out.get("stream")))
