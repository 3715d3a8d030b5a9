"""Deterministic reply generation and ``[sim:...]`` directive parsing, independent of wire format.

Everything here is a pure function of a request digest so that the same
request always yields the same reply, streamed or not, on any replica; tests
can then compare stream and non-stream output and predict token counts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from nemorouter.sim.tokens import count_text_tokens, truncate_to_tokens

_VOCABULARY_TEXT = (
    "alpha amber anchor apple arrow autumn basil beacon birch bloom breeze bright cedar cloud cobalt comet "
    "coral crisp dawn delta dune echo ember fable fern field flint forest frost garden glade harbor hazel "
    "horizon island ivory jade lantern lemon linen lumen maple meadow mellow misty nectar north ocean olive "
    "orbit pebble pine quartz raven river sable silver spruce stone summit thistle timber velvet willow"
)
VOCABULARY: tuple[str, ...] = tuple(_VOCABULARY_TEXT.split())
"""64 lowercase ``\\w+`` words: one word is exactly one token."""

DIRECTIVE_RE = re.compile(r"\[sim:([^\]]*)\]")
_MAX_SCHEMA_DEPTH = 8
_MAX_ARRAY_ITEMS = 16


# ----------------------------------------------------------------------------- directives


def parse_pairs(text: str) -> dict[str, str]:
    """``key=value`` pairs separated by ``;`` or ``,``; keys lowercased, malformed pairs skipped."""
    out: dict[str, str] = {}
    for item in re.split(r"[;,]", text):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if sep and key:
            out[key] = value.strip()
    return out


def inband_directives(texts: list[str]) -> dict[str, str]:
    """Merge every ``[sim:...]`` block found in ``texts``, later blocks winning."""
    out: dict[str, str] = {}
    for text in texts:
        if "[sim:" in text:
            for block in DIRECTIVE_RE.findall(text):
                out.update(parse_pairs(block))
    return out


def last_user_texts(messages: Any) -> list[str]:
    """Text of the last ``user`` message (string content or its ``text`` parts)."""
    if not isinstance(messages, list):
        return []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return [content]
            if isinstance(content, list):
                return [
                    p["text"]
                    for p in content
                    if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                ]
            return []
    return []


# ----------------------------------------------------------------------------- deterministic sources


def request_digest(*parts: Any) -> bytes:
    """Stable digest of JSON-able request parts (messages, model, seed...)."""
    return hashlib.sha256(orjson.dumps(list(parts), option=orjson.OPT_SORT_KEYS)).digest()


def choice_digest(base: bytes, index: int) -> bytes:
    """Per-choice digest so that ``n > 1`` choices differ deterministically."""
    return hashlib.sha256(base + b"choice" + index.to_bytes(4, "big")).digest()


def default_length(digest: bytes) -> int:
    """Default reply length in words: ``8 + seed % 24``."""
    return 8 + int.from_bytes(digest[:8], "big") % 24


def generate_words(digest: bytes, count: int) -> list[str]:
    """``count`` vocabulary words; a prefix of a longer draw from the same digest."""
    words: list[str] = []
    block = 0
    while len(words) < count:
        chunk = hashlib.sha256(digest + b"words" + block.to_bytes(4, "big")).digest()
        words.extend(VOCABULARY[b & 63] for b in chunk)
        block += 1
    return words[:count]


def tool_call_id(digest: bytes) -> str:
    return "call_" + hashlib.sha256(digest + b"call").hexdigest()[:24]


class Det:
    """A deterministic stream of small integers and words derived from a digest."""

    def __init__(self, digest: bytes, label: bytes = b"") -> None:
        self._seed = digest + label
        self._counter = 0

    def below(self, n: int) -> int:
        self._counter += 1
        h = hashlib.sha256(self._seed + self._counter.to_bytes(4, "big")).digest()
        return int.from_bytes(h[:8], "big") % max(n, 1)

    def words(self, count: int) -> str:
        return " ".join(VOCABULARY[self.below(64)] for _ in range(count))


# ----------------------------------------------------------------------------- JSON schema filling


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in ref.lstrip("#").split("/"):
        if part:
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


_FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "date-time": "2026-01-01T00:00:00Z",
        "date": "2026-01-01",
        "time": "12:00:00",
        "email": "sim@example.com",
        "uri": "https://example.com/sim",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
)


def fill_schema(schema: Any, det: Det, root: Any = None, depth: int = 0) -> Any:
    """A value satisfying the common subset of JSON Schema: required (else all) properties by type."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return det.words(2)
    if isinstance(schema.get("$ref"), str) and isinstance(root, dict):
        return fill_schema(_resolve(schema["$ref"], root), det, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][det.below(len(schema["enum"]))]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return fill_schema((usable or options)[0], det, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        raw_props = schema.get("properties")
        props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
        required = schema.get("required")
        keys = [k for k in required if isinstance(k, str)] if isinstance(required, list) else list(props)
        return {k: fill_schema(props.get(k, {}), det, root, depth + 1) for k in keys}
    if kind == "array":
        min_items = schema.get("minItems")
        count = min(min_items, _MAX_ARRAY_ITEMS) if isinstance(min_items, int) else 1
        if schema.get("maxItems") == 0:
            count = 0
        return [fill_schema(schema.get("items", {}), det, root, depth + 1) for _ in range(max(count, 0))]
    if kind in ("integer", "number"):
        low = int(schema["minimum"]) if isinstance(schema.get("minimum"), int | float) else 0
        high = int(schema["maximum"]) if isinstance(schema.get("maximum"), int | float) else low + 99
        high = max(high, low)
        value = low + det.below(high - low + 1)
        return value if kind == "integer" or value >= high else value + 0.5
    if kind == "boolean":
        return det.below(2) == 1
    if kind == "null":
        return None
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    return det.words(2)


def dumps(value: Any) -> str:
    """JSON text as OpenAI emits it (``json.dumps`` default separators, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------------------- reply planning


@dataclass(frozen=True)
class ToolSpec:
    """The one function the reply calls: its name and JSON-schema parameters."""

    name: str
    parameters: Any


@dataclass(frozen=True)
class Reply:
    """One generated choice: text or a tool call, its finish reason and visible token count."""

    content: str | None
    finish_reason: str
    tokens: int
    tool_name: str | None = None
    tool_arguments: str | None = None
    tool_call_id: str | None = None


def apply_stop(words: list[str], stops: list[str]) -> tuple[list[str], bool]:
    """Words that end before the first stop string; a word the stop starts inside is dropped."""
    text = " ".join(words)
    positions = [text.find(s) for s in stops if s]
    positions = [p for p in positions if p >= 0]
    if not positions:
        return words, False
    cut = min(positions)
    kept: list[str] = []
    end = 0
    for word in words:
        end += len(word)
        if end > cut:
            break
        kept.append(word)
        end += 1
    return kept, True


def text_reply(digest: bytes, length: int | None, cap: int | None, stops: list[str]) -> Reply:
    wanted = default_length(digest) if length is None else max(length, 0)
    capped = cap is not None and cap < wanted
    words = generate_words(digest, min(wanted, cap) if cap is not None else wanted)
    words, stopped = apply_stop(words, stops)
    finish = "stop" if stopped or not capped else "length"
    return Reply(content=" ".join(words), finish_reason=finish, tokens=len(words))


def json_reply(digest: bytes, schema: Any, length: int | None, cap: int | None) -> Reply:
    """JSON-mode content: ``{"answer": words}`` or an instance of ``schema``, cut at ``cap`` tokens."""
    if schema is None:
        count = default_length(digest) if length is None else max(length, 0)
        value: Any = {"answer": " ".join(generate_words(digest, count))}
    else:
        value = fill_schema(schema, Det(digest, b"json"))
    text = dumps(value)
    full = count_text_tokens(text)
    if cap is not None and cap < full:
        return Reply(content=truncate_to_tokens(text, cap), finish_reason="length", tokens=cap)
    return Reply(content=text, finish_reason="stop", tokens=full)


def tool_reply(digest: bytes, tool: ToolSpec, cap: int | None) -> Reply:
    """A call to ``tool``; if ``cap`` cannot hold the name, a capped text reply instead.

    Arguments are always a JSON object (``{}`` for a tool without parameters).
    """
    value = fill_schema(tool.parameters, Det(digest, b"args")) if isinstance(tool.parameters, dict) else {}
    args = dumps(value if isinstance(value, dict) else {})
    name_tokens = count_text_tokens(tool.name)
    arg_tokens = count_text_tokens(args)
    finish = "tool_calls"
    if cap is not None and cap < name_tokens + arg_tokens:
        if cap < name_tokens:
            return text_reply(digest, None, cap, [])
        args, arg_tokens, finish = truncate_to_tokens(args, cap - name_tokens), cap - name_tokens, "length"
    return Reply(
        content=None,
        finish_reason=finish,
        tokens=name_tokens + arg_tokens,
        tool_name=tool.name,
        tool_arguments=args,
        tool_call_id=tool_call_id(digest),
    )


def directed_tool(
    chosen: ToolSpec | None, wanted: str | None, offered: list[tuple[Any, Any]]
) -> ToolSpec | None:
    """The tool to call after the ``tool`` directive (faults.py): ``none`` for a text answer,
    an offered tool's name for that tool; only where a tool would be called anyway."""
    if chosen is None or wanted is None:
        return chosen
    if wanted == "none":
        return None
    for name, parameters in offered:
        if name == wanted:
            return ToolSpec(name, parameters)
    return chosen
