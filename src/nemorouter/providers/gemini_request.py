"""OpenAI chat body -> Gemini `generateContent` body (REST v1beta, camelCase JSON).

Every OpenAI field is either mapped, ignored on purpose (identifiers and hints that change
nothing Gemini produces), or refused with UnsupportedContent: Gemini answers 400 to unknown
fields, and silently dropping what the client asked for would bill it for something else.
"""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.providers.gemini_schema import gemini_schema, is_empty_object
from nemorouter.providers.openai_wire import GATEWAY_FIELDS
from nemorouter.providers.output_limit import OUTPUT_LIMIT_FIELDS, output_limit
from nemorouter.providers.types import UnsupportedContent

# Steer nothing Gemini generates: identifiers, storage and routing hints, our own stream option.
IGNORED_FIELDS = frozenset(
    {"user", "metadata", "store", "safety_identifier", "prompt_cache_key", "service_tier", "stream_options"}
    # Gemini has no switch for parallel calls; the client still receives every call made.
    | {"parallel_tool_calls"}
)
MAPPED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        *OUTPUT_LIMIT_FIELDS,
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "reasoning_effort",
        "tools",
        "tool_choice",
    }
)
# reasoning_effort -> thinkingBudget (tokens); 0 turns thinking off where the model allows it.
THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
# The part of a tool-call id after this mark is Gemini's thoughtSignature, which Gemini 3 needs
# echoed on the functionCall part (else MISSING_THOUGHT_SIGNATURE); LiteLLM uses the same mark.
THOUGHT_MARK = "__thought__"
_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
}
_AUDIO_FORMATS = {
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
}


def gemini_body(body: dict[str, Any], model_max: int = 8192) -> dict[str, Any]:
    """The Gemini request body for an OpenAI chat body; raises UnsupportedContent."""
    for name, value in body.items():
        if name in MAPPED_FIELDS or name in IGNORED_FIELDS or name in GATEWAY_FIELDS:
            continue
        if name == "modalities" and value == ["text"]:
            continue
        if value not in (None, False, "", [], {}):
            raise UnsupportedContent(f"Gemini cannot take the field `{name}`")
    system, contents = _contents(body.get("messages") or [])
    if not contents:
        raise UnsupportedContent("Gemini needs at least one user or assistant message besides system text")
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    declarations = _declarations(body.get("tools"))
    if declarations:
        declarations, config = _tool_config(body.get("tool_choice"), declarations)
        out["tools"] = [{"functionDeclarations": declarations}]
        if config is not None:
            out["toolConfig"] = {"functionCallingConfig": config}
    out["generationConfig"] = _generation_config(body, output_limit(body, model_max))
    return out


# -- messages ---------------------------------------------------------------------------------


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System parts, and the turns: assistant -> `model`, tool results -> `user`; Gemini wants
    consecutive turns of one role merged (several function responses answer one call turn)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for the function responses
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content"), where))
            continue
        if role == "user":
            turn, parts = "user", _user_parts(message.get("content"), where)
        elif role == "assistant":
            turn, parts = "model", _assistant_parts(message, names, where)
        elif role in ("tool", "function"):
            turn, parts = "user", [_function_response(message, names, where)]
        else:
            raise UnsupportedContent(f"{where} has role {role!r}, which Gemini cannot take")
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _text_of(part: Any, where: str) -> str:
    if not isinstance(part, dict):
        raise UnsupportedContent(f"{where} has a content part that is not an object")
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return str(part["text"])
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return str(part["refusal"])
    raise UnsupportedContent(f"{where} has a content part of type {kind!r}, which Gemini cannot take here")


def _text_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    texts = [content] if isinstance(content, str) else [_text_of(p, where) for p in content]
    return [{"text": t} for t in texts if t]  # Gemini refuses empty text parts


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_parts(content, where)
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media(url, f"{where} image_url"))  # `detail` is a hint Gemini has no field for
        elif kind == "input_audio":
            parts.append(_audio(part.get("input_audio"), where))
        elif kind == "file":
            parts.append(_file(part.get("file"), where))
        else:
            parts.extend(_text_parts([part], where))
    return parts


def _data_url(url: str, where: str) -> dict[str, str]:
    header, comma, data = url[len("data:") :].partition(",")
    mime, *params = header.split(";")
    if not comma or not mime or "base64" not in params:
        raise UnsupportedContent(f"{where}: only base64 data URLs can be sent to Gemini")
    return {"mimeType": mime, "data": data}


def _mime_of(name: str) -> str | None:
    path = name.split("?", 1)[0].split("#", 1)[0]
    _, dot, extension = path.rpartition(".")
    return _MIME_BY_EXTENSION.get(extension.lower()) if dot and "/" not in extension else None


def _media(url: Any, where: str) -> dict[str, Any]:
    """A data URL is inlined; a remote URL becomes `fileData`, which needs the MIME type: taken
    from the extension, and refused when the URL has none we know (a guess could mislead Gemini)."""
    if not isinstance(url, str):
        raise UnsupportedContent(f"{where} has no URL")
    if url.startswith("data:"):
        return {"inlineData": _data_url(url, where)}
    if url.startswith(("https://", "http://", "gs://")):
        mime = _mime_of(url)
        if mime is None:
            raise UnsupportedContent(
                f"{where}: cannot tell the media type of {url[:100]!r}; send a data URL, or a URL ending "
                f"in one of .{', .'.join(sorted(_MIME_BY_EXTENSION))}"
            )
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise UnsupportedContent(f"{where}: Gemini takes data URLs and http(s) URLs only")


def _audio(audio: Any, where: str) -> dict[str, Any]:
    fmt = audio.get("format") if isinstance(audio, dict) else None
    data = audio.get("data") if isinstance(audio, dict) else None
    if not isinstance(data, str) or fmt not in _AUDIO_FORMATS:
        raise UnsupportedContent(f"{where}: input_audio needs base64 data and a format Gemini knows")
    return {"inlineData": {"mimeType": _AUDIO_FORMATS[fmt], "data": data}}


def _file(file: Any, where: str) -> dict[str, Any]:
    if not isinstance(file, dict) or file.get("file_id"):
        raise UnsupportedContent(f"{where}: OpenAI file ids cannot reach Gemini; send file_data")
    data, name = file.get("file_data"), file.get("filename")
    if isinstance(data, str) and data.startswith("data:"):
        return {"inlineData": _data_url(data, where)}
    mime = _mime_of(name) if isinstance(name, str) else None
    if not isinstance(data, str) or mime is None:
        raise UnsupportedContent(f"{where}: a file needs base64 file_data and a known type")
    return {"inlineData": {"mimeType": mime, "data": data}}


def _assistant_parts(message: dict[str, Any], names: dict[str, str], where: str) -> list[dict[str, Any]]:
    if message.get("audio"):
        raise UnsupportedContent(f"{where}: assistant audio cannot be sent to Gemini")
    parts = _text_parts(message.get("content"), where)
    calls = list(message.get("tool_calls") or [])
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append({"id": legacy.get("name"), "type": "function", "function": legacy})
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise UnsupportedContent(f"{where}.tool_calls[{k}] is not a function call")
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            raise UnsupportedContent(
                f"{where}.tool_calls[{k}].function.arguments is not valid JSON"
            ) from None
        if not isinstance(args, dict):
            raise UnsupportedContent(f"{where}.tool_calls[{k}].function.arguments must be a JSON object")
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
        call_id = call.get("id")
        if isinstance(call_id, str):
            names[call_id] = fn["name"]
            _, mark, signature = call_id.partition(THOUGHT_MARK)
            if mark and signature:
                part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    """Gemini names the function a result answers, not the call id; the name comes from the
    assistant turn that made the call. `response` must be an object: text is wrapped."""
    call_id = message.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    name = name or message.get("name")
    if not isinstance(name, str) or not name:
        raise UnsupportedContent(f"{where}: tool_call_id {call_id!r} matches no earlier tool call")
    content = message.get("content")
    text = "".join(p["text"] for p in _text_parts(content, where)) if content is not None else ""
    return {"functionResponse": {"name": name, "response": {"content": text}}}


# -- tools ------------------------------------------------------------------------------------


def _declarations(tools: Any) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or []):
        where = f"tools[{i}]"
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or tool.get("type", "function") != "function":
            raise UnsupportedContent(f"{where}: Gemini takes only function tools")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise UnsupportedContent(f"{where}.function.name is missing")
        declaration: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            declaration["description"] = fn["description"]
        if fn.get("parameters") is not None:
            schema = gemini_schema(fn["parameters"], f"{where}.function.parameters")
            if not is_empty_object(schema):
                declaration["parameters"] = schema
        declarations.append(declaration)
    return declarations


def _tool_config(
    choice: Any, declarations: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """tool_choice -> functionCallingConfig: auto AUTO, required ANY, none NONE, a named function
    ANY + allowedFunctionNames. `allowed_tools` narrows the declarations themselves, since Gemini
    takes allowedFunctionNames only with ANY."""
    if choice is None:
        return declarations, None
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if isinstance(choice, str) and choice in modes:
        return declarations, {"mode": modes[choice]}
    declared = {d["name"] for d in declarations}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name not in declared:
            raise UnsupportedContent(f"tool_choice names {name!r}, which is not among the tools")
        return declarations, {"mode": "ANY", "allowedFunctionNames": [name]}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        spec = choice.get("allowed_tools") or {}
        wanted = {
            (t.get("function") or {}).get("name") for t in spec.get("tools") or [] if isinstance(t, dict)
        }
        kept = [d for d in declarations if d["name"] in wanted]
        if not kept or spec.get("mode") not in ("auto", "required"):
            raise UnsupportedContent("tool_choice.allowed_tools must name declared tools and a mode")
        return kept, {"mode": modes[spec["mode"]]}
    raise UnsupportedContent(f"tool_choice {choice!r} has no Gemini equivalent")


# -- generation settings ----------------------------------------------------------------------


def _generation_config(body: dict[str, Any], limit: int) -> dict[str, Any]:
    # The request's one limit (the hold's), always sent: omitted, Gemini allows the model's own
    # maximum. maxOutputTokens caps thoughts and answer together (observed on 2.5 and 3.x:
    # googleapis/python-genai#782 and #2062), and thinkingBudget is only guidance that the model
    # may overrun (ai.google.dev, "Gemini thinking"), so the hold never relies on the budget.
    config: dict[str, Any] = {"maxOutputTokens": limit}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else fmt
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise UnsupportedContent("response_format.json_schema.schema must be a JSON Schema object")
        # responseJsonSchema takes JSON Schema itself ($ref, $defs, additionalProperties...).
        config["responseJsonSchema"] = schema
    elif kind not in (None, "text", "json_object"):
        raise UnsupportedContent(f"response_format {kind!r} has no Gemini equivalent")
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise UnsupportedContent(f"reasoning_effort {effort!r} has no Gemini thinking budget")
        # Never a budget above the limit: the limit is the ceiling either way.
        config["thinkingConfig"] = {"thinkingBudget": min(THINKING_BUDGETS[effort], limit)}
    return config
