"""OpenTelemetry traces (NEMO_OTLP_ENDPOINT): a real OTLP/HTTP receiver (aiohttp, in the test)
gets, for one chat request, a server span with `authenticate`, `reserve`, `upstream attempt`
and `settle` as its children, all in one trace; no secret in any attribute. Off, the server
never imports OpenTelemetry."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import SIM_PROVIDER_SECRET, Sim, free_port, new_gateway

CHILDREN = ["authenticate", "reserve", "upstream attempt", "settle"]


class Receiver:
    """POST /v1/traces, protobuf-encoded (OTLP/HTTP): every span received, decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.content_types: set[str] = set()

    async def traces(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield found, port
    await runner.cleanup()


def attribute_values(span: Any) -> dict[str, str]:
    return {a.key: str(a.value).strip() for a in span.attributes}


async def test_one_chat_request_is_one_trace_with_its_steps(
    receiver: tuple[Receiver, int], tmp_path: Path, sim: Sim
) -> None:
    found, port = receiver
    gw = new_gateway(tmp_path, sim)
    gw.env["NEMO_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(gw.start)
    try:
        account = await asyncio.to_thread(gw.account, "1.00", "traced")
        key = await asyncio.to_thread(gw.key, account)
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert resp.status_code == 200, resp.text
        for _ in range(100):  # the batch goes out within half a second
            if any(s.name == "settle" for s in found.spans):
                break
            await asyncio.sleep(0.1)
    finally:
        assert await asyncio.to_thread(gw.stop) == 0

    assert found.content_types == {"application/x-protobuf"}
    roots = [s for s in found.spans if s.name == "POST /v1/chat/completions"]
    assert len(roots) == 1
    root = roots[0]
    assert root.parent_span_id == b"" and root.kind == root.SPAN_KIND_SERVER
    assert attribute_values(root)["http.response.status_code"] == "int_value: 200"
    in_trace = [s for s in found.spans if s.trace_id == root.trace_id and s is not root]
    assert sorted(s.name for s in in_trace) == sorted(CHILDREN)
    assert all(s.parent_span_id == root.span_id for s in in_trace)
    by_name = {s.name: s for s in in_trace}
    assert by_name["authenticate"].start_time_unix_nano < by_name["reserve"].start_time_unix_nano
    assert by_name["reserve"].start_time_unix_nano < by_name["upstream attempt"].start_time_unix_nano
    assert by_name["upstream attempt"].end_time_unix_nano <= by_name["settle"].start_time_unix_nano
    request_id = resp.headers["x-nemo-request-id"]
    assert request_id in attribute_values(by_name["settle"])["nemo.request.id"]
    # The admin calls made while setting up are traces of their own, without steps of a request.
    assert any(s.name == "POST /admin/v1/accounts" for s in found.spans)

    every_attribute = json.dumps([attribute_values(s) for s in found.spans])
    for secret in (key, SIM_PROVIDER_SECRET, gw.admin_token, "Bearer"):
        assert secret not in every_attribute


def test_off_by_default_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys; from nemorouter.app import create_app; from nemorouter.settings import Settings;"
        f"create_app(Settings.from_env({{'NEMO_DATA_DIR': {str(tmp_path)!r}}}));"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'nemorouter.tracing'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
