"""Authentication throttling applied to every route, hot or framework (web/throttle.py keeps the
per-address budget): a request that carries credentials from an address over its budget is
refused with 429 before anything else runs, and every 401 answered counts against its address."""

from __future__ import annotations

import math

from starlette.types import Message, Scope, Send

from nemorouter.errors import RateLimited
from nemorouter.web.throttle import AuthThrottle

CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")


def client_address(scope: Scope) -> str:
    """The peer, or the client a trusted proxy named (uvicorn rewrites the scope: cli/server.py)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


class AuthGate:
    def __init__(self, throttle: AuthThrottle) -> None:
        self.throttle = throttle

    def refusal(self, scope: Scope, address: str) -> RateLimited | None:
        """The 429 for a request with credentials from a throttled address, else None."""
        wait = self.throttle.retry_after(address)
        if wait is None or not any(name in CREDENTIAL_HEADERS for name, _ in scope["headers"]):
            return None
        return RateLimited(
            "too many failed authentications from this address; retry later", retry_after=math.ceil(wait)
        )

    def answered(self, address: str, status: int) -> None:
        if status == 401:
            self.throttle.failed(address)

    def watching(self, send: Send, address: str) -> Send:
        """`send`, counting the status of the response it starts (for routes that answer by
        themselves, the framework's)."""

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.answered(address, message["status"])
            await send(message)

        return watched
