"""A Gemini request -> the plan of generated candidates and Gemini-convention usage.

The same plan drives the whole response and the stream, so both say the same thing. Replies and
token counts reuse `content` and `tokens`; usage follows Google's conventions (see `usage`).

Gemini-only directives, beside those of `faults` (same `[sim:...]` / `x-sim` syntax):

``thinking=N``
    N thought tokens (``reasoning=N`` is the same): ``thoughtsTokenCount``, apart from
    ``candidatesTokenCount``; capped by ``thinkingBudget`` and first by ``maxOutputTokens``.
``include_thoughts=1``
    Also a ``thought: true`` summary part (as ``thinkingConfig.includeThoughts`` asks); its words
    are part of the N thought tokens.
``prompt_tokens=N``
    Report ``promptTokenCount = N`` whatever was sent: reaches a long-context price tier
    (e.g. above 200k) without sending 200k tokens. The gateway's hold is sized from the real
    request, so such a charge exceeds its hold (an overrun, by design of the test).
``tool_use=N``
    Report ``toolUsePromptTokenCount = N`` (input Google adds for tool results such as search).
``blocked=1``
    The prompt is blocked: no candidates, ``promptFeedback.blockReason = SAFETY``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from nemorouter.sim.content import (
    Reply,
    ToolSpec,
    choice_digest,
    directed_tool,
    generate_words,
    inband_directives,
    json_reply,
    parse_pairs,
    request_digest,
    text_reply,
    tool_reply,
)
from nemorouter.sim.faults import Faults, total_count
from nemorouter.sim.gemini_checks import get
from nemorouter.sim.tokens import (
    IMAGE_PART_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    OTHER_PART_TOKENS,
    PRIMING_TOKENS,
    count_text_tokens,
)

THOUGHT_SUMMARY_WORDS = 6


@dataclass(frozen=True)
class Extra:
    """The Gemini-only directives of one request."""

    thinking: int = 0
    include_thoughts: bool = False
    prompt_tokens: int | None = None
    tool_use: int = 0
    blocked: bool = False


def _number(directives: dict[str, str], name: str) -> int | None:
    try:
        value = int(directives[name])
    except (KeyError, ValueError):
        return None
    return value if value >= 0 else None


def extra_directives(header: str | None, texts: list[str], faults: Faults) -> Extra:
    found = inband_directives(texts)
    if header:
        found.update(parse_pairs(header))
    thinking = _number(found, "thinking")
    return Extra(
        thinking=thinking if thinking is not None else faults.reasoning,
        include_thoughts=(_number(found, "include_thoughts") or 0) > 0,
        prompt_tokens=_number(found, "prompt_tokens"),
        tool_use=_number(found, "tool_use") or 0,
        blocked=(_number(found, "blocked") or 0) > 0,
    )


def last_user_texts(body: dict[str, Any]) -> list[str]:
    """Texts of the last `user` turn: where in-band directives are read."""
    contents = get(body, "contents")
    for content in reversed(contents if isinstance(contents, list) else []):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            parts = content.get("parts")
            return [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


# -- prompt tokens: the OpenAI sim's rule, applied to Gemini's parts ---------------------------


def _part_tokens(part: Any) -> int:
    if not isinstance(part, dict):
        return 0
    if isinstance(part.get("text"), str):
        return count_text_tokens(part["text"])
    media = get(part, "inlineData") or get(part, "fileData")
    if isinstance(media, dict):
        return (
            IMAGE_PART_TOKENS if str(get(media, "mimeType", "")).startswith("image/") else OTHER_PART_TOKENS
        )
    for name, payload in (("functionCall", "args"), ("functionResponse", "response")):
        call = get(part, name)
        if isinstance(call, dict):
            return count_text_tokens(str(call.get("name", ""))) + count_text_tokens(
                json.dumps(call.get(payload))
            )
    return OTHER_PART_TOKENS


def count_prompt_tokens(body: dict[str, Any]) -> int:
    """Priming, then per turn (the system instruction counts as one) overhead plus its parts;
    tools as their JSON text."""
    total = PRIMING_TOKENS
    turns = list(get(body, "contents") or [])
    system = get(body, "systemInstruction")
    if isinstance(system, dict):
        turns.append(system)
    for turn in turns:
        parts = turn.get("parts") if isinstance(turn, dict) else None
        total += MESSAGE_OVERHEAD_TOKENS + sum(_part_tokens(p) for p in parts or [])
    tools = get(body, "tools")
    if tools:
        total += count_text_tokens(json.dumps(tools, ensure_ascii=False))
    return total


# -- replies ----------------------------------------------------------------------------------


def _lower_types(schema: Any) -> Any:
    """Gemini's schema types are upper case (`OBJECT`); the shared filler reads JSON Schema's."""
    if isinstance(schema, list):
        return [_lower_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _lower_types(v) for k, v in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    return out


def _pick_tool(body: dict[str, Any], declarations: list[dict[str, Any]]) -> ToolSpec | None:
    """A call when functions are declared, calling is not NONE, and the last turn is not a result."""
    if not declarations:
        return None
    config = get(get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    if config.get("mode") == "NONE":
        return None
    last = get(body, "contents")[-1]
    if any(get(p, "functionResponse") is not None for p in last.get("parts") or []):
        return None
    allowed = get(config, "allowedFunctionNames") or [d["name"] for d in declarations]
    chosen = next(d for d in declarations if d["name"] in allowed)
    params = get(chosen, "parametersJsonSchema") or chosen.get("parameters")
    return ToolSpec(chosen["name"], _lower_types(params))


@dataclass(frozen=True)
class Candidate:
    reply: Reply
    thought: str | None  # the thought summary part, when asked for
    signature: str | None  # thoughtSignature of a function call made after thinking

    @property
    def finish_reason(self) -> str:
        # Gemini's rule: a function call still finishes with STOP.
        return "MAX_TOKENS" if self.reply.finish_reason == "length" else "STOP"

    @property
    def args(self) -> Any:
        return json.loads(self.reply.tool_arguments or "{}")


@dataclass(frozen=True)
class GeminiPlan:
    candidates: list[Candidate]
    usage: dict[str, Any]
    blocked: bool
    prompt: int = 0  # the prompt tokens really sent (what the usage would say if honest)


def plan(
    body: dict[str, Any],
    model: str,
    config: dict[str, Any],
    declarations: list[dict[str, Any]],
    faults: Faults,
    extra: Extra,
) -> GeminiPlan:
    cap = get(config, "maxOutputTokens")
    thinking_config = get(config, "thinkingConfig") or {}
    budget = get(thinking_config, "thinkingBudget")
    thoughts = extra.thinking if not isinstance(budget, int) or budget < 0 else min(extra.thinking, budget)
    thoughts = min(thoughts, cap) if cap is not None else thoughts
    visible_cap = cap - thoughts if cap is not None else None
    include = extra.include_thoughts or get(thinking_config, "includeThoughts") is True
    tool = _pick_tool(body, declarations)
    if faults.tool is not None:
        offered = [
            (d["name"], _lower_types(get(d, "parametersJsonSchema") or d.get("parameters")))
            for d in declarations
        ]
        tool = directed_tool(tool, faults.tool, offered)
    json_mode = get(config, "responseMimeType") == "application/json"
    schema = get(config, "responseJsonSchema") or _lower_types(get(config, "responseSchema"))
    stops = get(config, "stopSequences") or []
    base = request_digest(get(body, "contents"), get(body, "systemInstruction"), model, get(config, "seed"))
    candidates = []
    for index in range(1 if extra.blocked else get(config, "candidateCount", 1)):
        digest = choice_digest(base, index)
        if tool is not None:
            reply = tool_reply(digest, tool, visible_cap)
        elif json_mode:
            reply = json_reply(digest, schema, faults.tokens, visible_cap)
        else:
            reply = text_reply(digest, faults.tokens, visible_cap, stops)
        thought = " ".join(generate_words(digest + b"thought", min(thoughts, THOUGHT_SUMMARY_WORDS)))
        signature = base64.b64encode(digest[:12]).decode() if thoughts and reply.tool_name else None
        candidates.append(Candidate(reply, thought if include and thoughts else None, signature))
    prompt = extra.prompt_tokens if extra.prompt_tokens is not None else count_prompt_tokens(body)
    produced = 0 if extra.blocked else sum(c.reply.tokens for c in candidates)
    thought_total = 0 if extra.blocked else thoughts * len(candidates)
    return GeminiPlan(
        candidates, usage(prompt, produced, thought_total, faults, extra.tool_use), extra.blocked, prompt
    )


def usage(prompt: int, candidates: int, thoughts: int, faults: Faults, tool_use: int) -> dict[str, Any]:
    """Google's conventions: promptTokenCount includes the cached tokens, thoughts are apart from
    candidates, total = prompt + candidates + thoughts + toolUse; zero counts are omitted.
    A misbehaving provider's directives (``faults``) change the prompt and candidate counts."""
    cached = faults.cached
    reported_prompt, reported_output = faults.prompt_count(prompt), faults.output_count(candidates)
    out: dict[str, Any] = {"promptTokenCount": reported_prompt}
    if reported_output:
        out["candidatesTokenCount"] = reported_output
    if cached:
        out["cachedContentTokenCount"] = min(cached, prompt)
    if tool_use:
        out["toolUsePromptTokenCount"] = tool_use
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    honest_total = prompt + candidates + thoughts + tool_use
    out["totalTokenCount"] = total_count([reported_prompt, reported_output, thoughts, tool_use], honest_total)
    out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": reported_prompt}]
    if cached:
        out["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": min(cached, prompt)}]
    return out
