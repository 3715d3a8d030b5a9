"""Messages fields an Anthropic upstream gets as the client wrote them (frontdoors/anthropic_messages).

A Messages request reaches the Anthropic adapter through the canonical chat body, which cannot
say everything Anthropic's own fields can (adaptive thinking, `output_config`, context
editing). The front door keeps those under `ANTHROPIC_PASSTHROUGH`, and this module puts them
back on the upstream body in place of what the chat body derived from them (a `thinking` or
`output_config` makes the derived `reasoning_effort` / `response_format` moot here).

Only the fields named below are taken, whoever sent them, and never one that sets the output
limit: `max_tokens` stays the hold's (Anthropic bounds thinking by it too), so nothing here can
make the upstream write more than the hold covers.

Beta names go in `anthropic-beta` only when they are on `PRICE_NEUTRAL_BETAS`: some betas change
what Anthropic bills for the same request (`context-1m-*` bills long prompts at the long-context
rates, `fast-mode-*` at six times the list price, server tools such as web search or code
execution by the call or the hour, the advisor tool another model's tokens), and we charge the
catalog's list price, so the operator would pay the difference. Unknown betas are dropped too:
the rule is "known not to change the price", never "not known to change it" (docs/providers.md).
"""

from __future__ import annotations

import re
from typing import Any

from nemorouter.providers.canonical import ANTHROPIC_PASSTHROUGH

__all__ = ["FIELDS", "PRICE_NEUTRAL_BETAS", "allowed_beta", "apply", "beta_header", "derived_body"]

# Messages field -> the chat-body fields the front door derived from it (ignored when it rides).
FIELDS: dict[str, tuple[str, ...]] = {
    "thinking": ("reasoning_effort",),
    "output_config": ("reasoning_effort", "response_format"),
    "context_management": (),
    "cache_control": (),
}

# Beta families that change no price and report every token they bill in the usage we read, each
# taken with any release date (`interleaved-thinking-2025-05-14`; Claude Code's own
# `claude-code-20250219`). What each does, and why the rest are dropped: docs/providers.md.
PRICE_NEUTRAL_BETAS = frozenset(
    {
        "claude-code",  # Claude Code's client identity: no behaviour or price of its own
        "context-management",  # context editing (`context_management`): fewer tokens sent, same rates
        "effort",  # `output_config.effort`: output still bounded by the hold's max_tokens
        "extended-cache-ttl",  # 1-hour cache writes: priced by the catalog's cache_write_1h
        "fine-grained-tool-streaming",  # how tool arguments stream, nothing else
        "interleaved-thinking",  # thinking between tool calls, inside max_tokens
        "mid-conversation-system",  # system turns inside `messages`: ordinary input tokens
        "model-context-window-exceeded",  # a stop reason, nothing billed
        "output-128k",  # a higher output ceiling; ours is still the hold's max_tokens
        "prompt-caching",  # prompt caching (GA): cache reads and writes at catalog prices
        "prompt-caching-scope",  # where cache breakpoints may sit: same cache prices
        "structured-outputs",  # `output_config.format` / strict tools: a constraint, same rates
        "thinking-token-count",  # a usage detail (thinking tokens counted apart), same rates
        "token-counting",  # count_tokens: free
        "token-efficient-tools",  # fewer output tokens for tool calls, same rates
    }
)
_BETA = re.compile(r"([a-z0-9]+(?:-[a-z0-9]+)*?)-(?:\d{4}-\d{2}-\d{2}|\d{8})")


def _native(body: dict[str, Any]) -> dict[str, Any]:
    found = body.get(ANTHROPIC_PASSTHROUGH)
    return found if isinstance(found, dict) else {}


def derived_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat body without what the passed-through fields replace (the same body if none)."""
    native = _native(body)
    dropped = {name for field, derived in FIELDS.items() if field in native for name in derived}
    if not dropped:
        return body
    return {k: v for k, v in body.items() if k not in dropped}


def apply(body: dict[str, Any], out: dict[str, Any]) -> None:
    """Put the passed-through fields on the Anthropic body `out`."""
    for field, value in _native(body).items():
        if field in FIELDS and value is not None:
            out[field] = value


def allowed_beta(name: str) -> bool:
    """Whether the beta `name` may reach Anthropic: a price-neutral family with a release date."""
    found = _BETA.fullmatch(name)
    return found is not None and found.group(1) in PRICE_NEUTRAL_BETAS


def beta_header(body: dict[str, Any]) -> str | None:
    """The `anthropic-beta` value for the client's price-neutral beta names, or None."""
    betas = _native(body).get("betas")
    if not isinstance(betas, list):
        return None
    names = [b for b in betas if isinstance(b, str) and allowed_beta(b)]
    return ",".join(dict.fromkeys(names)) or None
