"""Messages fields an Anthropic upstream gets as the client wrote them (frontdoors/anthropic_messages).

A Messages request reaches the Anthropic adapter through the canonical chat body, which cannot
say everything Anthropic's own fields can (adaptive thinking, `output_config`, context
editing). The front door keeps those under `ANTHROPIC_PASSTHROUGH`, and this module puts them
back on the upstream body in place of what the chat body derived from them (a `thinking` or
`output_config` makes the derived `reasoning_effort` / `response_format` moot here).

Only the fields named below are taken, whoever sent them, and never one that sets the output
limit: `max_tokens` stays the hold's (Anthropic bounds thinking by it too), so nothing here can
make the upstream write more than the hold covers. Beta names go in `anthropic-beta` only when
they are plain tokens (no CR/LF, no separators but `,`).
"""

from __future__ import annotations

import re
from typing import Any

from nemorouter.providers.canonical import ANTHROPIC_PASSTHROUGH

__all__ = ["FIELDS", "apply", "beta_header", "derived_body"]

# Messages field -> the chat-body fields the front door derived from it (ignored when it rides).
FIELDS: dict[str, tuple[str, ...]] = {
    "thinking": ("reasoning_effort",),
    "output_config": ("reasoning_effort", "response_format"),
    "context_management": (),
    "cache_control": (),
}
_BETA = re.compile(r"[A-Za-z0-9._-]{1,100}")


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


def beta_header(body: dict[str, Any]) -> str | None:
    """The `anthropic-beta` value for the client's beta names, or None."""
    betas = _native(body).get("betas")
    if not isinstance(betas, list):
        return None
    names = [b for b in betas if isinstance(b, str) and _BETA.fullmatch(b)]
    return ",".join(dict.fromkeys(names)) or None
