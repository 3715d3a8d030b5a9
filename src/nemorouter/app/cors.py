"""CORS on the public API (every `/v1/` route, hot and framework alike; app/fast.py calls it in
front of both), so a browser app can call the gateway with a bearer key.

Only bearer-key routes get it: the console's cookie routes (`/console`, `/`) and the operator's
admin API (`/admin/v1`) never do, and there is no credentials mode (`Access-Control-Allow-Credentials`
is never sent), so a page can only use a key it already holds. A preflight needs no key and is
answered here, before routing and authentication. Requests without an `Origin` header (every
non-browser client) pay one scan of the header list and nothing else.
"""

from __future__ import annotations

from starlette.types import Message, Scope, Send

PREFIX = "/v1/"
_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
_MAX_AGE = b"7200"  # Chromium's ceiling; browsers re-ask at most every two hours
# What a browser may read of an answer besides the CORS-safelisted headers: the request's id and
# cost, and OpenAI's rate-limit headers (limits/local.py) plus Retry-After.
_EXPOSED = b", ".join(
    [b"x-nemo-request-id", b"x-nemo-cost", b"retry-after", b"x-ratelimit-limit-concurrency"]
    + [
        f"x-ratelimit-{part}-{kind}".encode()
        for kind in ("requests", "tokens")
        for part in ("limit", "remaining", "reset")
    ]
)


class Cors:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any_origin = origins == ("*",)
        self.origins = frozenset(o.encode() for o in origins)

    def allowed(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        """The headers naming who may read the answer: none for an origin not on the list
        (the browser then withholds it); `Vary: Origin` whenever the answer depends on it."""
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        if origin.lower() in self.origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]
        return [(b"vary", b"origin")]

    async def preflight(self, scope: Scope, origin: bytes, send: Send) -> None:
        headers = self.allowed(origin)
        if headers[0][0] == b"access-control-allow-origin":
            requested = b""
            for name, value in scope["headers"]:
                if name == b"access-control-request-headers":
                    requested = value
            headers += [
                (b"access-control-allow-methods", _METHODS),
                (b"access-control-max-age", _MAX_AGE),
            ]
            if requested:  # echoed: authorization, x-api-key, anthropic-*, x-stainless-*, ...
                headers.append((b"access-control-allow-headers", requested))
                headers.append((b"vary", b"access-control-request-headers"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def answering(self, origin: bytes, send: Send) -> Send:
        """`send` with the CORS headers added to the response's start."""
        extra = self.allowed(origin)
        if extra[0][0] == b"access-control-allow-origin":
            extra.append((b"access-control-expose-headers", _EXPOSED))

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return with_cors


def browser_origin(scope: Scope) -> bytes | None:
    """The request's `Origin` header; None when absent (every non-browser client). Typed, so the
    compiled build (tools/build_native.py) scans the list in C: about 0.2 µs for an SDK's headers."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]  # uvicorn's: a list of byte-string pairs
    for name, value in headers:
        if name == b"origin":
            return value
    return None


def is_preflight(scope: Scope) -> bool:
    """An `OPTIONS` naming the method it asks about: a browser's CORS preflight."""
    return scope["method"] == "OPTIONS" and any(
        name == b"access-control-request-method" for name, _ in scope["headers"]
    )
