"""Validation of a Gemini `generateContent` body the way Google's front end does it.

Google's JSON parser refuses unknown field names ("Invalid JSON payload received. Unknown name
...: Cannot find field.") and its schema subset refuses JSON-Schema keywords it lacks, so a
gateway that sends OpenAI leftovers fails here as it would in production. Field names are
accepted in lowerCamelCase and in snake_case, as proto JSON parsing does.
"""

from __future__ import annotations

import re
from typing import Any


class GeminiBadRequest(Exception):
    """A request Google would refuse with 400 INVALID_ARGUMENT."""


def _names(*camel: str) -> frozenset[str]:
    return frozenset(camel) | frozenset(re.sub(r"([A-Z])", r"_\1", c).lower() for c in camel)


TOP = _names(
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
)
CONTENT = _names("role", "parts")
PART_DATA = _names(
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
PART = PART_DATA | _names("thought", "thoughtSignature", "videoMetadata", "mediaResolution")
GENERATION = _names(
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
)
THINKING = _names("thinkingBudget", "includeThoughts", "thinkingLevel")
TOOL = _names("functionDeclarations", "googleSearch", "codeExecution", "urlContext")
DECLARATION = _names("name", "description", "parameters", "parametersJsonSchema", "response", "behavior")
SCHEMA = _names(
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
)
MODES = frozenset({"AUTO", "ANY", "NONE", "VALIDATED"})
MAX_STOP_SEQUENCES = 5
MAX_CANDIDATES = 8


def get(obj: dict[str, Any], camel: str, default: Any = None) -> Any:
    """A field by its camelCase name, or by its snake_case name."""
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"([A-Z])", r"_\1", camel).lower(), default)


def _known(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise GeminiBadRequest(f"Invalid value at '{where}': expected an object.")
    for name in obj:
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise GeminiBadRequest(
                f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
            )
    return obj


def _schema(schema: Any, where: str) -> None:
    node = _known(schema, SCHEMA, where)
    kind = str(node.get("type", "")).upper()
    props = node.get("properties")
    if props is not None:
        if kind == "OBJECT" and not props:
            raise GeminiBadRequest(
                f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
            )
        for name, value in props.items():
            _schema(value, f"{where}.properties[{name}]")
    if node.get("items") is not None:
        _schema(node["items"], f"{where}.items")
    for i, option in enumerate(node.get("anyOf") or []):
        _schema(option, f"{where}.any_of[{i}]")
    enum = node.get("enum")
    if enum is not None and not (isinstance(enum, list) and all(isinstance(v, str) for v in enum)):
        raise GeminiBadRequest(f"Invalid value at '{where}.enum': only strings are allowed.")


def _contents(contents: Any) -> None:
    if not isinstance(contents, list) or not contents:
        raise GeminiBadRequest("* GenerateContentRequest.contents: contents is not specified")
    previous_calls = 0
    for i, content in enumerate(contents):
        content = _known(content, CONTENT, f"contents[{i}]")
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise GeminiBadRequest(
                f"* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
            )
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise GeminiBadRequest(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        responses = 0
        for k, part in enumerate(parts):
            part = _known(part, PART, f"contents[{i}].parts[{k}]")
            data = [name for name in part if name in PART_DATA]
            if len(data) != 1:
                raise GeminiBadRequest(
                    f"* GenerateContentRequest.contents[{i}].parts[{k}].data: required oneof field 'data' must have one initialized field"
                )
            if data[0] == "text" and part["text"] == "":
                raise GeminiBadRequest(
                    f"* GenerateContentRequest.contents[{i}].parts[{k}].text: must not be empty"
                )
            responses += data[0] in ("functionResponse", "function_response")
        if responses and responses != previous_calls:
            raise GeminiBadRequest(
                "Please ensure that the number of function response parts is equal to the number of "
                "function call parts of the function call turn."
            )
        previous_calls = sum(1 for p in parts if get(p, "functionCall") is not None) if role == "model" else 0


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    for i, tool in enumerate(get(body, "tools") or []):
        tool = _known(tool, TOOL, f"tools[{i}]")
        for k, decl in enumerate(get(tool, "functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{k}]"
            decl = _known(decl, DECLARATION, where)
            if not isinstance(decl.get("name"), str) or not decl["name"]:
                raise GeminiBadRequest(f"* GenerateContentRequest.{where}.name: Name cannot be empty.")
            if decl.get("parameters") is not None:
                _schema(decl["parameters"], f"{where}.parameters")
            declarations.append(decl)
    config = get(get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = config.get("mode", "AUTO")
    if mode not in MODES:
        raise GeminiBadRequest(f"Invalid value at 'tool_config.function_calling_config.mode' ({mode!r})")
    names = {d["name"] for d in declarations}
    for name in get(config, "allowedFunctionNames") or []:
        if name not in names:
            raise GeminiBadRequest(
                f"* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: {name} is not a declared function"
            )
    return declarations


def _generation(body: dict[str, Any]) -> dict[str, Any]:
    config = _known(get(body, "generationConfig") or {}, GENERATION, "generation_config")
    _known(get(config, "thinkingConfig") or {}, THINKING, "generation_config.thinking_config")
    cap = get(config, "maxOutputTokens")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
        raise GeminiBadRequest(
            "* GenerateContentRequest.generation_config.max_output_tokens: must be positive"
        )
    count = get(config, "candidateCount", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CANDIDATES:
        raise GeminiBadRequest(
            f"* GenerateContentRequest.generation_config.candidate_count: must be 1..{MAX_CANDIDATES}"
        )
    stops = get(config, "stopSequences") or []
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) for s in stops)
    ):
        raise GeminiBadRequest(
            f"* GenerateContentRequest.generation_config.stop_sequences: at most {MAX_STOP_SEQUENCES} strings"
        )
    return config


def validate(body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The generation config and the function declarations of a valid body; raises GeminiBadRequest."""
    body = _known(body, TOP, "")
    _contents(get(body, "contents"))
    system = get(body, "systemInstruction")
    if system is not None:
        for k, part in enumerate(_known(system, CONTENT, "system_instruction").get("parts") or []):
            _known(part, PART, f"system_instruction.parts[{k}]")
    return _generation(body), _tools(body)
