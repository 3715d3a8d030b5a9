"""The hot path in plain ASGI: the front doors' POST routes (chat, embeddings, messages).

These routes carry nearly all traffic, so they skip the framework's middleware, router
and request objects (about a fifth of a request's CPU) and speak ASGI directly. Everything
else goes to the Starlette app. Behaviour is the same as the framework routes would give:
the contract's errors, statuses and headers.
"""

from __future__ import annotations

import logging
import math
import time

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from nemorouter import jsonx
from nemorouter.app.streaming import SseResponse
from nemorouter.app.throttle import AuthThrottle
from nemorouter.errors import NemoError, RateLimited, RequestTooLarge
from nemorouter.frontdoors.anthropic_messages.serve import MESSAGES
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.openai_chat import CHAT, EMBEDDINGS
from nemorouter.service.auth import bearer
from nemorouter.service.container import Services
from nemorouter.service.gateway import JsonReply, StreamReply
from nemorouter.timeutil import time_ordered_id

log = logging.getLogger("nemorouter.app")
_JSON = (b"content-type", b"application/json")

# Every public wire format's POST route (frontdoors/): path -> its door.
DOORS: dict[str, FrontDoor] = {door.path: door for door in (CHAT, EMBEDDINGS, MESSAGES)}


async def _body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            raise RequestTooLarge("the client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _error_body(scope: Scope, error: NemoError) -> dict[str, object]:
    door = DOORS.get(scope["path"])
    return error.body() if door is None else door.error_body(error)


def _has_credentials(scope: Scope) -> bool:
    return any(name in (b"authorization", b"x-api-key") for name, _ in scope["headers"])


class FastPath:
    """ASGI app: the front doors directly, everything else through Starlette."""

    def __init__(self, app: Starlette, auth_failures_per_minute: int = 30) -> None:
        self.app = app
        self.throttle = AuthThrottle(auth_failures_per_minute)

    def _watching(self, send: Send, address: str) -> Send:
        """The framework's routes: count a 401 they answer as a failed authentication."""

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.throttle.failed(address)
            await send(message)

        return watched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None and _has_credentials(scope):
            throttled = RateLimited(
                "too many failed authentications from this address; retry later", retry_after=math.ceil(wait)
            )
            await _send_json(send, 429, jsonx.dumps(_error_body(scope, throttled)), throttled.headers)
            return
        door = DOORS.get(scope["path"]) if scope["method"] == "POST" else None
        if door is None:
            await self.app(scope, receive, self._watching(send, address))
            return
        services: Services = self.app.state.services
        assert services.gateway is not None
        metrics = services.gateway.metrics
        route = scope["path"]
        started = time.monotonic()
        try:
            reply = await self._handle(services, door, scope, receive)
        except NemoError as exc:
            if exc.status == 401:
                self.throttle.failed(address)
            # Every answer names a request id; one refused before admission has no record behind it.
            headers = {"x-nemo-request-id": time_ordered_id("gen-"), **exc.headers}
            await _send_json(send, exc.status, jsonx.dumps(_error_body(scope, exc)), headers)
            metrics.answered(route, exc.status, None)
            log.info(
                "refused",
                extra={
                    "request_id": headers["x-nemo-request-id"],
                    "endpoint": route,
                    "status": exc.status,
                    "type": exc.type,
                },
            )
            return
        except Exception:
            log.exception("unexpected error", extra={"path": route})
            error = NemoError("internal error")
            await _send_json(send, error.status, jsonx.dumps(_error_body(scope, error)), {})
            metrics.answered(route, 500, None)
            return
        if isinstance(reply, JsonReply):
            await _send_json(send, reply.status, reply.body, reply.headers)
        else:
            metrics.ttft.labels(route).observe(time.monotonic() - started)
            await SseResponse(reply.chunks, reply.headers)(scope, receive, send)
        metrics.answered(route, 200, time.monotonic() - started)

    async def _handle(
        self, services: Services, door: FrontDoor, scope: Scope, receive: Receive
    ) -> JsonReply | StreamReply:
        authorization = declared = api_key = None
        key_header = door.key_header
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
            elif name == key_header:
                api_key = value.decode("latin-1").strip() or None
        assert services.routes is not None and services.auth is not None and services.gateway is not None
        await services.routes.refresh()
        secret = bearer(authorization) if authorization is not None else api_key
        key = await services.auth.authenticate(secret, "inference", cached=True)
        body = await _body(receive, declared, services.settings.max_body_bytes)
        return await door.serve(services.gateway, key, body)
