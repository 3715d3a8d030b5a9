"""Optional OpenTelemetry traces, exported over OTLP/HTTP when NEMO_OTLP_ENDPOINT is set.

One trace per HTTP request: a server span for the request, and under it a span for each step
that waits on something — `authenticate`, `reserve`, every `upstream attempt`, `settle`.

Off (the default) this module is not even imported, and nothing on the request path changes:
`create_app` wraps the app and the lifespan wraps the services (the authenticator, the store
and the upstream client) in traced proxies only when tracing is on, so the gateway's own code
carries no tracing branch. The OpenTelemetry packages are an extra: `pip install '.[otel]'`.

Span attributes are ids, names, statuses, counts and amounts: never a key, a provider secret,
a header or a query string (a Gemini URL may carry its key there).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nemorouter import __version__


class Tracing:
    """The tracer provider of one server process, exporting in batches from a thread."""

    def __init__(self, endpoint: str) -> None:
        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        resource = Resource.create({"service.name": "nemorouter", "service.version": __version__})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=5), schedule_delay_millis=500)
        )
        self.tracer: Tracer = self.provider.get_tracer("nemorouter")

    def wrap_app(self, app: Any) -> TracedApp:
        return TracedApp(app, self.tracer)

    def instrument(self, services: Any) -> None:
        """Swap the services' authenticator, store and upstream client for traced proxies."""
        services.auth = TracedAuth(services.auth, self.tracer)
        gateway = services.gateway
        gateway.use(
            TracedStore(gateway.store, self.tracer), TracedClient(gateway.dispatcher.client, self.tracer)
        )

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what is left


@contextmanager
def _step(tracer: Tracer, name: str, **attributes: Any) -> Iterator[Span]:
    with tracer.start_as_current_span(name, attributes=attributes, record_exception=False) as span:
        try:
            yield span
        except Exception as exc:
            # The type only: a message may quote what a client sent.
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", getattr(exc, "type", type(exc).__name__))
            raise


class _Proxy:
    def __init__(self, inner: Any, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TracedAuth(_Proxy):
    async def authenticate(self, secret: str | None, scope: str, *, cached: bool = False) -> Any:
        with _step(self._tracer, "authenticate", **{"nemo.key.scope": scope}) as span:
            key = await self._inner.authenticate(secret, scope, cached=cached)
            span.set_attribute("nemo.key.id", key.id)
            span.set_attribute("nemo.account.id", key.account_id)
            return key


class TracedStore(_Proxy):
    async def reserve(self, hold: Any, now: str) -> Any:
        with _step(self._tracer, "reserve", **{"nemo.request.id": hold.request_id}) as span:
            result = await self._inner.reserve(hold, now)
            span.set_attribute("nemo.reserve.ok", bool(result.ok))
            span.set_attribute("nemo.hold.pico_usd", str(hold.amount))
            if not result.ok:
                span.set_attribute("nemo.reserve.refused", str(result.reason))
            return result

    async def settle(self, request_id: str, generation: Any, window: str) -> Any:
        attributes = {
            "nemo.request.id": request_id,
            "nemo.status": generation.status,
            "nemo.cost.pico_usd": str(generation.cost),
        }
        with _step(self._tracer, "settle", **attributes):
            return await self._inner.settle(request_id, generation, window)


def _where(request: Any) -> dict[str, Any]:
    parts = urlsplit(request.url)
    return {"server.address": parts.hostname or "", "url.path": parts.path, "nemo.stream": request.stream}


class TracedClient(_Proxy):
    async def send(self, request: Any, timeouts: Any = None) -> Any:
        with _step(self._tracer, "upstream attempt", **_where(request)) as span:
            raw = await self._inner.send(request, timeouts)
            span.set_attribute("http.response.status_code", raw.status)
            return raw

    async def open_stream(self, request: Any, timeouts: Any = None) -> Any:
        with _step(self._tracer, "upstream attempt", **_where(request)) as span:
            opened = await self._inner.open_stream(request, timeouts)
            span.set_attribute("http.response.status_code", getattr(opened, "status", 200))
            return opened


class TracedApp:
    """The server span of every HTTP request, around the whole app (streams included)."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self._tracer = tracer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        attributes = {"http.request.method": method, "url.path": path}
        with self._tracer.start_as_current_span(
            f"{method} {path}", kind=SpanKind.SERVER, attributes=attributes, record_exception=False
        ) as span:

            async def watched(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, watched)
