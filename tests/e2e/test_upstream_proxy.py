"""`serve` behind an outbound proxy: calls to the provider (the simulator) go through the proxy
named by HTTP_PROXY, with its credentials, unless NO_PROXY names the provider; a malformed proxy
URL stops `serve` at start with one line that names the variable and not the password."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SECRET_SCAN, Gateway, Sim, new_gateway, wait_until
from engine.loopback import Proxy


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    """A forward proxy (tests/engine/loopback.py) on a loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(Proxy(credentials="gw:s3cret").start(), loop).result(10)
    yield running
    asyncio.run_coroutine_threadsafe(running.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def ask(gw: Gateway) -> str:
    key = gw.key(gw.account("1.00"))
    done = gw.openai(key).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    return str(done.choices[0].message.content)


@pytest.mark.parametrize("bypassed", [False, True])
def test_calls_to_the_provider_go_through_the_proxy_unless_no_proxy_names_it(
    tmp_path: Path, sim: Sim, proxy: Proxy, bypassed: bool
) -> None:
    gw = new_gateway(tmp_path, sim)
    SECRET_SCAN.registry.add("s3cret", "a proxy password")  # in no log or database, ever
    gw.env["HTTP_PROXY"] = proxy.url("gw:s3cret@")
    if bypassed:
        gw.env["NO_PROXY"] = "localhost,127.0.0.1"
    gw.start()
    try:
        assert ask(gw)
    finally:
        assert gw.stop() == 0
    sim_port = sim.url.rsplit(":", 1)[1].split("/")[0]
    through = [head.split(b"\r\n")[0] for head in proxy.asked]
    if bypassed:
        assert through == []
    else:
        assert through == [f"POST http://127.0.0.1:{sim_port}/v1/chat/completions HTTP/1.1".encode()]
    assert "s3cret" not in (gw.data_dir / "gateway.log").read_text()


def test_a_malformed_proxy_url_stops_serve_with_one_clear_line(tmp_path: Path) -> None:
    gw = new_gateway(tmp_path, None)
    gw.env["HTTPS_PROXY"] = "socks5://gw:hunter2@proxy.internal:1080"
    done = gw.cli("serve", "--port", "0", check=False)
    assert done.returncode == 2 and done.stderr.count("error:") == 1
    assert "HTTPS_PROXY" in done.stderr and "hunter2" not in done.stderr


def test_webhooks_go_out_through_the_same_proxy(tmp_path: Path, sim: Sim, proxy: Proxy) -> None:
    """Alert deliveries (aiohttp, service/alerting/outbox.py) honour HTTP_PROXY too: an operator
    who routes egress through a proxy sees every outbound call there, not only the providers'."""
    from e2e.test_alerts import FAST_RETRIES, Receiver, chat, subscribe  # its helpers, not its tests

    receiver = Receiver().start()
    gw = new_gateway(tmp_path, sim)
    gw.env.update(FAST_RETRIES, HTTP_PROXY=proxy.url("gw:s3cret@"))
    SECRET_SCAN.registry.add("s3cret", "a proxy password")
    gw.start()
    try:
        account = gw.account("1.00")
        subscribe(gw, account, receiver.url(f"/hooks/{account}"), "1.00")
        assert chat(gw, gw.key(account)).status_code == 200
        assert wait_until(lambda: receiver.acknowledged(f"/hooks/{account}", "credits.low"), timeout=10)
    finally:
        assert gw.stop() == 0
        receiver.stop()
    through = [head.split(b"\r\n")[0] for head in proxy.asked]
    assert receiver.url(f"/hooks/{account}").encode() in b" ".join(through), through
