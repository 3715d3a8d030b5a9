"""The hot path in plain ASGI: the front doors' POST routes (chat, embeddings, moderations, rerank,
images, audio, messages).

These routes carry nearly all traffic, so they skip the framework's middleware, router and
request objects (about a fifth of a request's CPU) and speak ASGI directly. Everything else goes
to the Starlette app. What a client sees is the same either way, because both use the one body
reader (`body`), error rendering (`error_replies`), authentication throttling (`auth_gate`, here
in front of every route) and security headers (`headers`).
"""

from __future__ import annotations

import logging
import time

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from nemorouter.app.auth_gate import AuthGate, client_address
from nemorouter.app.cors import PREFIX as CORS_PREFIX
from nemorouter.app.cors import Cors, browser_origin, is_preflight
from nemorouter.app.error_replies import error_headers, error_json, unexpected
from nemorouter.app.headers import ALWAYS, SECURITY_NAMES, secured
from nemorouter.app.streaming import SseResponse
from nemorouter.errors import NemoError
from nemorouter.frontdoors.anthropic_messages.count import COUNT_TOKENS
from nemorouter.frontdoors.anthropic_messages.serve import MESSAGES
from nemorouter.frontdoors.audio import SPEECH, TRANSCRIPTIONS, TRANSLATIONS
from nemorouter.frontdoors.door import FrontDoor, Reply, contract_error_body
from nemorouter.frontdoors.openai_chat import CHAT, EMBEDDINGS
from nemorouter.frontdoors.openai_images import IMAGE_EDITS, IMAGES
from nemorouter.frontdoors.openai_moderations import MODERATIONS
from nemorouter.frontdoors.rerank import RERANK
from nemorouter.frontdoors.responses.serve import RESPONSES
from nemorouter.service.auth import bearer
from nemorouter.service.container import Services
from nemorouter.service.gateway import JsonReply
from nemorouter.service.media import BytesReply
from nemorouter.timeutil import time_ordered_id
from nemorouter.web.body import receive_body
from nemorouter.web.throttle import AuthThrottle
from nemorouter.web.whole_response import write_whole

log = logging.getLogger("nemorouter.app")
_JSON = (b"content-type", b"application/json")

# Every public wire format's POST route (frontdoors/): path -> its door.
DOORS: dict[str, FrontDoor] = {
    door.path: door
    for door in (
        CHAT,
        EMBEDDINGS,
        MODERATIONS,
        RERANK,
        IMAGES,
        IMAGE_EDITS,
        SPEECH,
        TRANSCRIPTIONS,
        TRANSLATIONS,
        MESSAGES,
        COUNT_TOKENS,
        RESPONSES,
    )
}


async def _send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str], kind: tuple[bytes, bytes] = _JSON
) -> None:
    raw = [kind, (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    if SECURITY_NAMES.isdisjoint(headers):  # the usual answer: JSON, none of them set, so all added
        raw += ALWAYS
    else:
        secured(raw)
    if write_whole(send, status, raw, body):  # uvicorn's own cycle: the same bytes, in one step
        return
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class FastPath:
    """ASGI app: the front doors directly, everything else through Starlette."""

    def __init__(
        self, app: Starlette, auth_failures_per_minute: int = 30, cors_origins: tuple[str, ...] = ("*",)
    ) -> None:
        self.app = app
        self.gate = AuthGate(AuthThrottle(auth_failures_per_minute))
        self.cors = Cors(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(CORS_PREFIX):
            origin = browser_origin(scope)
            if origin is not None:  # a browser's request (app/cors.py)
                if is_preflight(scope):
                    await self.cors.preflight(scope, origin, send)
                    return
                send = self.cors.answering(origin, send)
        address = client_address(scope)
        at_path = DOORS.get(scope["path"])
        throttled = self.gate.refusal(scope, address)
        if throttled is not None:
            shape = contract_error_body if at_path is None else at_path.error_body
            await _send_json(send, throttled.status, error_json(throttled, shape), error_headers(throttled))
            return
        door = at_path if scope["method"] == "POST" else None
        if door is None:
            await self.app(scope, receive, self.gate.watching(send, address))
            return
        services: Services = self.app.state.services
        assert services.gateway is not None
        metrics = services.gateway.metrics
        route = door.path
        started = time.monotonic()
        try:
            reply = await self._handle(services, door, scope, receive)
        except NemoError as exc:
            self.gate.answered(address, exc.status)
            # Every answer names a request id; one refused before admission has no record behind it.
            headers = error_headers(exc, {"x-nemo-request-id": time_ordered_id("gen-")})
            await _send_json(send, exc.status, error_json(exc, door.error_body), headers)
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
            error = unexpected(route)
            await _send_json(send, error.status, error_json(error, door.error_body), {})
            metrics.answered(route, 500, None)
            return
        if isinstance(reply, JsonReply):
            await _send_json(send, reply.status, reply.body, reply.headers)
        elif isinstance(reply, BytesReply):  # audio, or a transcription as text: as the provider sent it
            kind = (b"content-type", reply.content_type.encode("latin-1"))
            await _send_json(send, reply.status, reply.body, reply.headers, kind)
        else:
            metrics.ttft.labels(route).observe(time.monotonic() - started)
            await SseResponse(reply.chunks, reply.headers)(scope, receive, send)
        metrics.answered(route, 200, time.monotonic() - started)

    async def _handle(self, services: Services, door: FrontDoor, scope: Scope, receive: Receive) -> Reply:
        authorization = declared = api_key = None
        key_header, reads = door.key_header, door.reads
        read: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
            elif name == key_header:
                api_key = value.decode("latin-1").strip() or None
            elif name in reads:
                # A list-valued header sent on several lines is one comma-joined value (RFC 9110 5.3).
                read[name] = read[name] + b"," + value if name in read else value
        assert services.routes is not None and services.auth is not None and services.gateway is not None
        await services.routes.refresh()
        secret = bearer(authorization) if authorization is not None else api_key
        key = await services.auth.authenticate(secret, "inference", cached=True)
        body = await receive_body(receive, declared, services.settings.max_body_bytes)
        if door.serve_with_headers is not None:
            return await door.serve_with_headers(services.gateway, key, body, read)
        return await door.serve(services.gateway, key, body)
