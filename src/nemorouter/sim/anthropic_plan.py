"""Reading and validating an Anthropic Messages request into a plan: content blocks, stop, usage.

One plan drives both the non-stream body and the stream, so they always agree. Content
and token counts reuse ``content`` and ``tokens`` (same seeds and tokenizer as the OpenAI
routes); usage follows Anthropic's conventions (``input_tokens`` excludes cache reads and writes).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from nemorouter.sim.content import (
    Reply,
    ToolSpec,
    apply_stop,
    default_length,
    directed_tool,
    generate_words,
    request_digest,
    text_reply,
    tool_reply,
)
from nemorouter.sim.faults import Faults
from nemorouter.sim.tokens import (
    IMAGE_PART_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    OTHER_PART_TOKENS,
    PRIMING_TOKENS,
    count_text_tokens,
    count_tools_tokens,
)

# Top-level fields the real API accepts; anything else is "Extra inputs are not permitted".
FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_config",
        "cache_control",
        "inference_geo",
        "speed",
    }
)
USER_BLOCKS = frozenset({"text", "image", "document", "tool_result", "search_result"})
ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
THINKING_MIN = 1024
CLASSIC_VERSION = "2023-06-01"


class Invalid(Exception):
    """A request the real API refuses with 400 ``invalid_request_error``."""


@dataclass(frozen=True)
class Extras:
    """Directives only the Anthropic routes read (same parser and integer rules as ``faults``)."""

    cache_write_1h: int = 0
    thinking: int | None = None

    @classmethod
    def from_directives(cls, directives: dict[str, str]) -> Extras:
        def number(name: str) -> int | None:
            try:
                value = int(directives.get(name, ""))
            except ValueError:
                return None
            return value if value >= 0 else None

        thinking = number("thinking")
        return cls(number("cache_write_1h") or 0, thinking if thinking is not None else number("reasoning"))


@dataclass(frozen=True)
class Plan:
    """What the model "writes": content blocks in order, why it stopped, and the usage."""

    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any]
    tool_json: str = ""  # the tool input as streamed (a prefix of it when max_tokens cut it)
    start_output: Any = 0  # message_start's output_tokens (the real API sends 1 or so)


# ----------------------------------------------------------------------------- validation


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_block(block: Any, allowed: frozenset[str], where: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in allowed:
        raise Invalid(
            f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags"
        )
    if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        raise Invalid(f"{where}: text content blocks must be non-empty")
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64" and source.get("media_type") not in IMAGE_TYPES:
            raise Invalid(
                f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
            )
        if source.get("type") not in ("base64", "url", "file"):
            raise Invalid(
                f"{where}.source: Input tag {source.get('type')!r} does not match any of the expected tags"
            )
    if kind == "tool_use" and not (isinstance(block.get("id"), str) and isinstance(block.get("input"), dict)):
        raise Invalid(f"{where}: tool_use blocks need an id and an input object")
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        raise Invalid(f"{where}.tool_use_id: Field required")


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, str | list) or (isinstance(content, list) and not content):
            raise Invalid(f"messages.{i}: all messages must have non-empty content")
        blocks = _blocks(content)
        for j, block in enumerate(blocks):
            _check_block(
                block, USER_BLOCKS if role == "user" else ASSISTANT_BLOCKS, f"messages.{i}.content.{j}"
            )
        if role == "user":
            answered = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
            if pending - answered or answered - pending:
                raise Invalid(
                    f"messages.{i}: each tool_use needs a tool_result in the next user message, and only then"
                )
            pending = set()
        else:
            pending |= {b["id"] for b in blocks if b.get("type") == "tool_use"}


def validate(body: dict[str, Any]) -> int:
    """Refuse what the real API refuses; returns ``max_tokens``."""
    for name in body:
        if name not in FIELDS:
            raise Invalid(f"{name}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("model: Field required")
    if "max_tokens" not in body:
        raise Invalid("max_tokens: Field required")
    max_tokens = body["max_tokens"]
    if not _positive_int(max_tokens):
        raise Invalid("max_tokens: Input should be greater than or equal to 1")
    _check_messages(body.get("messages"))
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            raise Invalid("system: Input should be a valid string or list")
        for j, block in enumerate(system):
            _check_block(block, frozenset({"text"}), f"system.{j}")
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 1):
        raise Invalid("temperature: Input should be between 0 and 1")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise Invalid("stop_sequences: Input should be a valid list of strings")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < THINKING_MIN:
            raise Invalid(
                f"thinking.enabled.budget_tokens: Input should be greater than or equal to {THINKING_MIN}"
            )
        if budget >= max_tokens:
            raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    return int(max_tokens)


def _format_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise Invalid("output_config.format: Input tag does not match the expected tag 'json_schema'")
    schema: dict[str, Any] = fmt["schema"]
    return schema


def _tool(body: dict[str, Any]) -> ToolSpec | None:
    """The tool to call: when tools are given, not refused, and the last turn is not a tool result."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise Invalid("tool_choice: Input tag does not match any of the expected tags")
    if not tools or choice["type"] == "none":
        if choice["type"] in ("any", "tool"):
            raise Invalid("tool_choice: a tool can only be forced when `tools` are given")
        return None
    last = _blocks(body["messages"][-1].get("content"))
    if body["messages"][-1]["role"] == "user" and any(b.get("type") == "tool_result" for b in last):
        return None
    if choice["type"] == "tool":
        found = [t for t in tools if t["name"] == choice.get("name")]
        if not found:
            raise Invalid(f"tool_choice: Tool '{choice.get('name')}' not found in tools")
        tools = found
    return ToolSpec(tools[0]["name"], tools[0].get("input_schema"))


# ----------------------------------------------------------------------------- counting and planning


def _block_tokens(block: Any) -> int:
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return count_text_tokens(str(block.get("text") or ""))
    if kind == "image":
        return IMAGE_PART_TOKENS
    if kind == "tool_use":
        return count_text_tokens(str(block.get("name") or "")) + count_text_tokens(
            json.dumps(block.get("input"), ensure_ascii=False)
        )
    if kind == "tool_result":
        content = block.get("content")
        return sum(_block_tokens(b) for b in _blocks(content)) if content else 0
    if kind == "thinking":
        return count_text_tokens(str(block.get("thinking") or ""))
    if kind == "redacted_thinking":
        return 0
    return OTHER_PART_TOKENS


def count_prompt_tokens(body: dict[str, Any]) -> int:
    """Every input token: priming, each turn (system counts as one) with its overhead, the tools."""
    turns = [m.get("content") for m in body["messages"]]
    if body.get("system"):
        turns.append(body["system"])
    total = PRIMING_TOKENS + sum(MESSAGE_OVERHEAD_TOKENS + sum(map(_block_tokens, _blocks(c))) for c in turns)
    return total + count_tools_tokens(body.get("tools"))


def _usage(
    prompt: int, output: int, thinking: int, faults: Faults, extras: Extras, version: str
) -> dict[str, Any]:
    cached = min(faults.cached, prompt)
    one_hour = min(extras.cache_write_1h, prompt - cached)
    five_min = min(faults.cache_write or 0, prompt - cached - one_hour)
    usage: dict[str, Any] = {
        "input_tokens": faults.prompt_count(prompt - cached - one_hour - five_min),
        "cache_creation_input_tokens": five_min + one_hour,
        "cache_read_input_tokens": cached,
        "cache_creation": {"ephemeral_5m_input_tokens": five_min, "ephemeral_1h_input_tokens": one_hour},
        "output_tokens": faults.output_count(output),
        "service_tier": "standard",
    }
    if version > CLASSIC_VERSION:  # newer API versions break out the thinking tokens
        usage["output_tokens_details"] = {"thinking_tokens": thinking}
    return usage


def plan_message(body: dict[str, Any], faults: Faults, extras: Extras, version: str) -> Plan:
    """Validate the request and generate the reply; raises ``Invalid``."""
    max_tokens = validate(body)
    digest = request_digest(body.get("system"), body["messages"], body["model"])
    enabled = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
    wanted = extras.thinking if extras.thinking is not None else (default_length(digest) if enabled else 0)
    thinking = min(wanted, max_tokens)
    blocks: list[dict[str, Any]] = []
    if thinking:
        words = " ".join(generate_words(hashlib.sha256(digest + b"thinking").digest(), thinking))
        signature = base64.b64encode(hashlib.sha256(digest + b"signature").digest()).decode()
        blocks.append({"type": "thinking", "thinking": words, "signature": signature})
    cap = max_tokens - thinking
    tool = _tool(body)
    if faults.tool is not None:
        offered = [
            (t.get("name"), t.get("input_schema")) for t in body.get("tools") or [] if isinstance(t, dict)
        ]
        tool = directed_tool(tool, faults.tool, offered)
    reply = tool_reply(digest, tool, cap) if tool is not None else text_reply(digest, faults.tokens, cap, [])
    schema = _format_schema(body)
    if tool is None and schema is not None:
        # Structured output (`output_config.format`): the answer is JSON text of the schema,
        # made as a call's arguments are; cut by max_tokens, it is cut JSON, as the real API's.
        made = tool_reply(digest, ToolSpec("output", schema), cap)
        if made.tool_arguments is not None:
            finish = "length" if made.finish_reason == "length" else "stop"
            reply = Reply(made.tool_arguments, finish, made.tokens - count_text_tokens("output"))
    stop_reason = "max_tokens" if reply.finish_reason == "length" else "end_turn"
    stop_sequence = None
    visible = reply.tokens
    tool_json = ""
    if reply.tool_name is not None:
        try:
            arguments = json.loads(reply.tool_arguments or "{}")
        except json.JSONDecodeError:
            arguments = {}  # cut by max_tokens: the stream shows the fragments, the body an empty input
        tool_json = reply.tool_arguments or ""
        call_id = "toolu_" + (reply.tool_call_id or "")[len("call_") :]
        blocks.append({"type": "tool_use", "id": call_id, "name": reply.tool_name, "input": arguments})
        stop_reason = "tool_use" if reply.finish_reason == "tool_calls" else stop_reason
    else:
        text = reply.content or ""
        found = [(text.find(s), s) for s in body.get("stop_sequences") or [] if s and s in text]
        if found:
            kept, _ = apply_stop(text.split(" "), [s for _, s in found])
            text, visible = " ".join(kept), len(kept)
            stop_reason, stop_sequence = "stop_sequence", min(found)[1]
        if text or not blocks:
            blocks.append({"type": "text", "text": text})
    output = thinking + visible
    usage = _usage(count_prompt_tokens(body), output, thinking, faults, extras, version)
    return Plan(blocks, stop_reason, stop_sequence, usage, tool_json, faults.output_count(min(1, output)))
