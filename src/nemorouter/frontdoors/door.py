"""What the app needs to mount a front door: its path, how it serves, how it shapes an error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nemorouter.errors import NemoError
from nemorouter.service.gateway import Gateway, JsonReply, StreamReply
from nemorouter.service.media import BytesReply
from nemorouter.store.records import ApiKey

Reply = JsonReply | StreamReply | BytesReply
Serve = Callable[[Gateway, ApiKey, bytes], Awaitable[Reply]]
# A door that reads request headers too: those named in `FrontDoor.reads`, as sent (lower-case names).
ServeWithHeaders = Callable[[Gateway, ApiKey, bytes, dict[bytes, bytes]], Awaitable[Reply]]
ErrorBody = Callable[[NemoError], dict[str, Any]]


def contract_error_body(error: NemoError) -> dict[str, Any]:
    """The contract's error object (`{"error": {...}}`), what every OpenAI-shaped route answers."""
    return error.body()


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """One public POST route: `serve` takes the key and the body's bytes (already authenticated
    and read within the size limit) and answers; `error_body` shapes a refusal in the door's
    format; `key_header` names a header besides `Authorization: Bearer` that may carry the key;
    `serve_with_headers`, when set, answers instead of `serve` and is given the `reads` headers."""

    path: str
    serve: Serve
    error_body: ErrorBody = contract_error_body
    key_header: bytes | None = None
    reads: frozenset[bytes] = frozenset()
    serve_with_headers: ServeWithHeaders | None = None
