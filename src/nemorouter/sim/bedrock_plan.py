"""A Converse request read into the Anthropic plan (the same content, counts and faults as the
Messages route: Converse's turns and blocks are the Messages API's in other names), and the plan
written back in Converse's shapes: the whole answer and the ConverseStream events.

Usage follows Bedrock's conventions: `inputTokens` excludes cache reads and writes
(`cacheReadInputTokens`, `cacheWriteInputTokens`), and `totalTokens` is the sum of all four.
"""

from __future__ import annotations

import json
from typing import Any

from nemorouter.sim.anthropic_plan import Invalid, Plan
from nemorouter.sim.faults import Faults, total_count
from nemorouter.sim.tokens import token_pieces

# ConverseRequest's members (service-2.json); anything else is refused as Bedrock refuses it.
FIELDS = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
    }
)
INFERENCE = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
DEFAULT_MAX_TOKENS = 4096  # what the sim's models write without inferenceConfig.maxTokens
TOOL_ARG_FRAGMENT = 8


def _block(block: Any, where: str) -> dict[str, Any] | None:
    """A Converse ContentBlock as the Messages API's block; None for a cachePoint."""
    if not isinstance(block, dict) or len(block) != 1:
        raise Invalid(f"{where}: a content block has exactly one member")
    ((kind, value),) = block.items()
    match kind:
        case "text" if isinstance(value, str):
            return {"type": "text", "text": value}
        case "image" if isinstance(value, dict):
            data = (value.get("source") or {}).get("bytes")
            if value.get("format") not in ("png", "jpeg", "gif", "webp") or not isinstance(data, str):
                raise Invalid(f"{where}: an image needs a format and source.bytes")
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": f"image/{value['format']}", "data": data},
            }
        case "document" if isinstance(value, dict):
            return {"type": "text", "text": str(value.get("name") or "")}
        case "toolUse" if isinstance(value, dict):
            return {
                "type": "tool_use",
                "id": value.get("toolUseId"),
                "name": value.get("name"),
                "input": value.get("input"),
            }
        case "toolResult" if isinstance(value, dict):
            content = [
                {"type": "text", "text": c["text"] if "text" in c else json.dumps(c.get("json"))}
                for c in value.get("content") or []
                if isinstance(c, dict)
            ]
            return {"type": "tool_result", "tool_use_id": value.get("toolUseId"), "content": content}
        case "reasoningContent" if isinstance(value, dict):
            text = value.get("reasoningText") or {}
            return {
                "type": "thinking",
                "thinking": str(text.get("text") or ""),
                "signature": str(text.get("signature") or ""),
            }
        case "cachePoint":
            return None
    raise Invalid(f"{where}: content block {kind!r} is not valid here")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list) or not content:
        raise Invalid(f"{where}.content: a non-empty list is required")
    out = [_block(b, f"{where}.content.{j}") for j, b in enumerate(content)]
    return [b for b in out if b is not None]


def messages_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages-API body the plan is made from; raises `Invalid` as Bedrock's validation would."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise Invalid(f"Malformed input request: extraneous key [{unknown[0]}] is not permitted")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("A conversation must start with a user message.")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: must be user or assistant")
        turns.append({"role": message["role"], "content": _blocks(message.get("content"), f"messages.{i}")})
    uses_tools = any(b["type"] in ("tool_use", "tool_result") for t in turns for b in t["content"])
    config = body.get("inferenceConfig") or {}
    if not isinstance(config, dict) or set(config) - INFERENCE:
        raise Invalid("inferenceConfig: only maxTokens, temperature, topP and stopSequences")
    out: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": config.get("maxTokens", DEFAULT_MAX_TOKENS),
    }
    if body.get("system"):
        made = [_block(b, f"system.{j}") for j, b in enumerate(body["system"])]
        out["system"] = [b for b in made if b is not None]
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop_sequences", "stopSequences"),
    ):
        if theirs in config:
            out[ours] = config[theirs]
    tools = body.get("toolConfig")
    if tools is None:
        if uses_tools:
            raise Invalid(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks."
            )
        return out
    out["tools"] = [_tool(t, j) for j, t in enumerate(tools.get("tools") or [])]
    choice = tools.get("toolChoice") or {"auto": {}}
    if "any" in choice:
        out["tool_choice"] = {"type": "any"}
    elif "tool" in choice:
        out["tool_choice"] = {"type": "tool", "name": (choice["tool"] or {}).get("name")}
    else:
        out["tool_choice"] = {"type": "auto"}
    return out


def _tool(tool: Any, j: int) -> dict[str, Any]:
    spec = tool.get("toolSpec") if isinstance(tool, dict) else None
    schema = (spec or {}).get("inputSchema") or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or "json" not in schema:
        raise Invalid(f"toolConfig.tools.{j}: a toolSpec needs a name and inputSchema.json")
    return {"name": spec["name"], "description": spec.get("description", ""), "input_schema": schema["json"]}


# ----------------------------------------------------------------------------- answers


def usage(plan: Plan, faults: Faults) -> dict[str, Any]:
    """The plan's usage (Anthropic's conventions, the same exclusions) in Bedrock's names."""
    raw = plan.usage
    parts = [
        raw["input_tokens"],
        raw["output_tokens"],
        raw["cache_read_input_tokens"],
        raw["cache_creation_input_tokens"],
    ]
    honest = sum(p for p in parts if type(p) is int)
    out: dict[str, Any] = {
        "inputTokens": raw["input_tokens"],
        "outputTokens": raw["output_tokens"],
        "totalTokens": total_count(parts, honest),
        "cacheReadInputTokens": raw["cache_read_input_tokens"],
        "cacheWriteInputTokens": raw["cache_creation_input_tokens"],
    }
    # The writes by TTL, 1h before 5m (service-2.json's CacheDetail), when there are any.
    split = raw["cache_creation"]
    ttls = (("1h", split["ephemeral_1h_input_tokens"]), ("5m", split["ephemeral_5m_input_tokens"]))
    details = [{"ttl": ttl, "inputTokens": tokens} for ttl, tokens in ttls if tokens]
    if details:
        out["cacheDetails"] = details
    return out


def content(plan: Plan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in plan.blocks:
        if block["type"] == "thinking":
            out.append(
                {
                    "reasoningContent": {
                        "reasoningText": {"text": block["thinking"], "signature": block["signature"]}
                    }
                }
            )
        elif block["type"] == "tool_use":
            out.append(
                {"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block["input"]}}
            )
        else:
            out.append({"text": block["text"]})
    return out


def whole_body(plan: Plan, faults: Faults) -> dict[str, Any]:
    body: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": content(plan)}},
        "stopReason": plan.stop_reason,
        "metrics": {"latencyMs": faults.latency_ms or 1},
    }
    if not faults.no_usage:
        body["usage"] = usage(plan, faults)
    return body


def stream_events(plan: Plan) -> list[tuple[str, dict[str, Any], bool]]:
    """(event type, payload, counts as content) for each ConverseStream event before the end."""
    events: list[tuple[str, dict[str, Any], bool]] = [("messageStart", {"role": "assistant"}, False)]
    for i, block in enumerate(plan.blocks):
        deltas: list[dict[str, Any]]
        if block["type"] == "thinking":
            deltas = [{"reasoningContent": {"text": p}} for p in token_pieces(block["thinking"])]
            deltas.append({"reasoningContent": {"signature": block["signature"]}})
        elif block["type"] == "tool_use":
            start = {"toolUse": {"toolUseId": block["id"], "name": block["name"]}}
            events.append(("contentBlockStart", {"contentBlockIndex": i, "start": start}, False))
            step = TOOL_ARG_FRAGMENT
            json_text = plan.tool_json
            deltas = [{"toolUse": {"input": json_text[k : k + step]}} for k in range(0, len(json_text), step)]
        else:
            deltas = [{"text": p} for p in token_pieces(block["text"])]
        events += [("contentBlockDelta", {"contentBlockIndex": i, "delta": d}, True) for d in deltas]
        events.append(("contentBlockStop", {"contentBlockIndex": i}, False))
    return events
