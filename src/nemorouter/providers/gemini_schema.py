"""JSON Schema (OpenAI tool parameters) -> Gemini's `Schema`, the OpenAPI 3.0 subset it accepts.

Gemini answers 400 "Unknown name ..." for any keyword outside that subset, so the rule is:

- kept: the keywords of the subset (`type`, `format`, `description`, `enum`, `items`, `properties`,
  `required`, `anyOf`, `nullable`, `title`, `minimum`/`maximum`, `minItems`/`maxItems`,
  `minLength`/`maxLength`, `pattern`, `minProperties`/`maxProperties`, `propertyOrdering`, `example`);
- translated, because they define the shape: local `$ref` (inlined from `$defs`/`definitions`),
  `oneOf` (-> `anyOf`), an `allOf` whose members do not conflict (merged into one schema: the
  same constraints, since each keyword is set by one member or alike in all, except that two
  different `pattern`s or `format`s are dropped, as other checks the subset cannot express;
  Claude Code's tools have such), `const` (-> a one-value `enum`),
  `type: [T, "null"]` and an `anyOf` member `{"type": "null"}` (-> `nullable: true`);
- dropped, because they only annotate or add validation the subset cannot express:
  `$schema`, `$id`, `$comment`, `additionalProperties`, `default`, `examples`, `multipleOf`,
  `exclusiveMinimum`/`exclusiveMaximum`, `uniqueItems`, `deprecated`, `readOnly`/`writeOnly`,
  `format`s Gemini does not know, and `enum`s of non-strings (Gemini's enum is strings only);
- refused (UnsupportedContent): recursive or non-local `$ref`, an `allOf` whose members conflict,
  `not`, `if`/`then`/`else`, and type unions of several non-null types.
"""

from __future__ import annotations

from typing import Any

from nemorouter.providers.types import UnsupportedContent

_COPIED = frozenset(
    {
        "description",
        "title",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minProperties",
        "maxProperties",
        "propertyOrdering",
        "example",
    }
)
_REFUSED = ("not", "if", "then", "else", "patternProperties", "dependentSchemas")
# Gemini's documented formats per type; other formats are hints it rejects.
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
_MAX_DEPTH = 32


def gemini_schema(schema: Any, where: str) -> dict[str, Any]:
    """The Gemini `Schema` for a JSON Schema; `where` names it in error messages."""
    if not isinstance(schema, dict):
        raise UnsupportedContent(f"{where} must be a JSON Schema object")
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, dict):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})
    return _convert(schema, defs, where, (), 0)


def _resolve(ref: Any, defs: dict[str, Any], where: str, seen: tuple[str, ...]) -> Any:
    if not isinstance(ref, str) or ref not in defs:
        raise UnsupportedContent(f"{where}: $ref {ref!r} is not a local definition, which Gemini cannot take")
    if ref in seen:
        raise UnsupportedContent(f"{where}: $ref {ref!r} is recursive, which Gemini's schemas cannot express")
    return defs[ref]


_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "example", "$comment"})
_CHECKS_ONLY = frozenset({"pattern", "format"})


def _merged(members: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """One schema meaning what all `members` mean together, when no keyword conflicts:
    properties are joined (one definition each), `required` lists united."""
    out: dict[str, Any] = {}
    dropped: set[str] = set()
    for member in members:
        for key, value in member.items():
            if key == "properties" and isinstance(value, dict) and isinstance(out.get(key), dict):
                for name, schema in value.items():
                    if out[key].get(name, schema) != schema:
                        raise UnsupportedContent(f"{where}: allOf defines property {name!r} twice")
                out[key] = {**out[key], **value}
            elif key == "required" and isinstance(value, list) and isinstance(out.get(key), list):
                out[key] = [*out[key], *(v for v in value if v not in out[key])]
            elif key in out and out[key] != value:
                if key in _ANNOTATIONS:
                    continue  # the first member's note is kept
                if key not in _CHECKS_ONLY:
                    raise UnsupportedContent(
                        f"{where}: allOf members conflict on {key!r}; no Gemini equivalent"
                    )
                dropped.add(key)
            else:
                out[key] = value
    # Two patterns (or formats) cannot be one: like any validation the subset cannot express,
    # the check is dropped; the shape stays.
    return {k: v for k, v in out.items() if k not in dropped}


def _convert(
    node: Any, defs: dict[str, Any], where: str, seen: tuple[str, ...], depth: int
) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise UnsupportedContent(f"{where} is nested too deeply for Gemini")
    if not isinstance(node, dict):
        if node is True:
            return {}
        raise UnsupportedContent(f"{where} must be a JSON Schema object")
    if "$ref" in node:
        target = _resolve(node["$ref"], defs, where, seen)
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs, where, (*seen, node["$ref"]), depth + 1)
    for key in _REFUSED:
        if key in node:
            raise UnsupportedContent(f"{where}: the JSON Schema keyword {key!r} has no Gemini equivalent")
    all_of = node.get("allOf")
    if all_of is not None:
        if not isinstance(all_of, list) or not all_of or not all(isinstance(m, dict) for m in all_of):
            raise UnsupportedContent(f"{where}: allOf must be a list of schemas")
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return _convert(_merged([*all_of, rest], where), defs, where, seen, depth + 1)

    out: dict[str, Any] = {k: node[k] for k in _COPIED if k in node}
    nullable = node.get("nullable") is True
    kind = node.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        nullable = nullable or len(types) < len(kind)
        if len(types) != 1:
            raise UnsupportedContent(f"{where}: a union of types {kind!r} has no Gemini equivalent")
        kind = types[0]
    if kind is not None:
        if not isinstance(kind, str) or kind.lower() not in _TYPES:
            raise UnsupportedContent(f"{where}: type {kind!r} has no Gemini equivalent")
        out["type"] = kind.upper()

    options = node.get("anyOf", node.get("oneOf"))
    if options is not None:
        if not isinstance(options, list) or not options:
            raise UnsupportedContent(f"{where}: anyOf/oneOf must be a non-empty list")
        real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        nullable = nullable or len(real) < len(options)
        converted = [_convert(o, defs, where, seen, depth + 1) for o in real]
        if len(converted) == 1:
            out = {**converted[0], **out}
        elif converted:
            out["anyOf"] = converted

    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    enum = node.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        out["enum"] = enum
        out.setdefault("type", "STRING")
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt

    if "items" in node:
        out["items"] = _convert(node["items"], defs, f"{where}.items", seen, depth + 1)
    props = node.get("properties")
    if isinstance(props, dict) and props:
        out["properties"] = {
            name: _convert(value, defs, f"{where}.properties.{name}", seen, depth + 1)
            for name, value in props.items()
        }
        required = node.get("required")
        if isinstance(required, list):
            # Gemini refuses a `required` name that has no property; such a name constrains nothing.
            out["required"] = [r for r in required if isinstance(r, str) and r in props]
    if nullable:
        out["nullable"] = True
    return out


def is_empty_object(schema: dict[str, Any]) -> bool:
    """An object schema without properties: Gemini refuses it ("properties: should be non-empty for
    OBJECT type"), so a function without parameters is declared without `parameters`."""
    return schema.get("type", "OBJECT") == "OBJECT" and not schema.get("properties") and "anyOf" not in schema
