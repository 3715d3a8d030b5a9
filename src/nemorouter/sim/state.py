"""Per-app simulator state: accepted keys and the ring buffer of recent requests.

Lives on ``app.state.sim`` (never in module globals) so several sims can run in
one process, e.g. one per test.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

MAX_RECORDED = 1000
_MAX_RECORDED_BODY = 64 * 1024
SIM_KEY_PREFIX = "sk-sim-"


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


@dataclass(frozen=True)
class ServiceAccount:
    """A Google service account the sim's OAuth token endpoint accepts (sim/vertex_auth.py):
    its public key verifies the grant's RS256 signature; `token_lifetime` is the `expires_in`
    of the tokens it gets; `token_status`, if set, is what the token endpoint answers instead
    (a 503: the endpoint is down)."""

    public_key_pem: str
    token_lifetime: int = 3600
    token_status: int | None = None


@dataclass
class SimState:
    """Mutable state of one sim app instance. `accepted_keys` are the API keys it accepts;
    `service_accounts` (by client_email) the Google service accounts it issues tokens to, and
    `access_tokens` the tokens it issued (token -> expiry, Unix time), which Vertex routes take;
    `aws_sessions` the temporary AWS credentials its STS issued (access key id -> (secret,
    session token, expiry in Unix time)), which the Bedrock routes take."""

    accepted_keys: frozenset[str] | None = None
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_RECORDED))
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)
    aws_sessions: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    def key_accepted(self, key: str | None) -> bool:
        """``accepted_keys=None`` accepts any key that starts with ``sk-sim-``."""
        if key is None:
            return False
        if self.accepted_keys is None:
            return key.startswith(SIM_KEY_PREFIX)
        return key in self.accepted_keys

    def record(self, request: Request, body: bytes, parsed: Any) -> None:
        """Remember what reached the sim, so tests can check what the gateway really sent."""
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        model = parsed.get("model") if isinstance(parsed, dict) else None
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "model": model if isinstance(model, str) else None,
                "authorization": request.headers.get("authorization"),
                "headers": headers,
                "body_bytes": len(body),
                "body": parsed if len(body) <= _MAX_RECORDED_BODY else None,
            }
        )

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` requests, oldest first."""
        items = list(self.requests)
        return items[-limit:] if limit > 0 else []
