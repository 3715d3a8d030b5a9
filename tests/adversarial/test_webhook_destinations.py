"""Customers' webhook URLs cannot reach inside the operator's network (server-side request forgery).

A customer sets the URL; the gateway POSTs to it from where it runs. Loopback, private, link-local
(a cloud's metadata service) and other non-global hosts are refused when set, and a name that
resolves only to such addresses is refused at delivery (so DNS cannot be turned inward later),
unless the operator allows private receivers (NEMO_WEBHOOKS_ALLOW_PRIVATE).
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest

from conftest import Sim, new_gateway, wait_until
from e2e.test_alerts import Receiver, chat, management
from nemorouter.service.alerting.destinations import REFUSED, PrivateAddress, literal_refusal
from nemorouter.service.alerting.webhook_session import PublicOnlyResolver

INSIDE = [
    "http://127.0.0.1:8080/hook",
    "http://127.1.2.3/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://10.0.0.5/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://localhost:9/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
]
OUTSIDE = ["https://hooks.example.com/in", "http://93.184.216.34/hook", "https://[2606:4700:4700::1111]/hook"]


@pytest.mark.parametrize("url", INSIDE)
def test_a_url_inside_is_refused_as_written(url: str) -> None:
    assert literal_refusal(url) == REFUSED


@pytest.mark.parametrize("url", OUTSIDE)
def test_a_public_url_or_a_name_is_not_refused_as_written(url: str) -> None:
    assert literal_refusal(url) is None


def _resolve(exempt: frozenset[str], host: str) -> list[str]:
    async def run() -> list[str]:
        resolver = PublicOnlyResolver(exempt)  # aiohttp's resolver wants a running loop
        try:
            return [entry["host"] for entry in await resolver.resolve(host, 80)]
        finally:
            await resolver.close()

    return asyncio.run(run())


def test_a_name_that_resolves_only_inside_is_refused_at_connect() -> None:
    with pytest.raises(PrivateAddress):
        _resolve(frozenset(), "localhost")
    assert "127.0.0.1" in _resolve(frozenset({"localhost"}), "localhost")  # a proxy's host


def _inward_name() -> str:
    """This machine's own name: it resolves to loopback or a private address here."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    hosts = [f"[{a}]" if ":" in a else a for a in addresses]
    assert hosts and all(literal_refusal(f"http://{h}/") == REFUSED for h in hosts), addresses
    return name


@pytest.mark.parametrize("allowed", [False, True])
def test_a_customer_webhook_cannot_be_pointed_inside(tmp_path: Path, sim: Sim, allowed: bool) -> None:
    receiver = Receiver().start()
    gw = new_gateway(tmp_path, sim)
    gw.env.update(NEMO_ALERT_RETRY_BASE="0.2", NEMO_ALERT_RETRY_CAP="1")
    if allowed:
        gw.env["NEMO_WEBHOOKS_ALLOW_PRIVATE"] = "true"
    gw.start()
    try:
        account = gw.account("1.00")
        client = management(gw, account)
        literal = client.put(
            "/v1/alerts", json={"url": receiver.url("/literal"), "low_balance_threshold": "1.00"}
        )
        if not allowed:
            assert literal.status_code == 400, literal.text
            assert literal.json()["error"]["type"] == "invalid_request"
            assert "not a public address" in literal.json()["error"]["message"]
        # A name set while it looked harmless, resolving inside at delivery: never delivered.
        by_name = receiver.url("/by-name").replace("127.0.0.1", _inward_name())
        assert (
            client.put("/v1/alerts", json={"url": by_name, "low_balance_threshold": "1.00"}).status_code
            == 200
        )
        assert chat(gw, gw.key(account)).status_code == 200  # the balance falls below: credits.low
        log = gw.data_dir / "gateway.log"
        if allowed:
            assert wait_until(lambda: receiver.acknowledged("/by-name", "credits.low"), timeout=10)
        else:

            def given_up() -> bool:
                lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
                return any(
                    "given up" in line.get("msg", "") and line.get("error") == REFUSED for line in lines
                )

            assert wait_until(given_up, timeout=10)
            assert receiver.deliveries == []
        assert httpx.get(f"{gw.url}/readyz", timeout=10).status_code == 200
    finally:
        assert gw.stop() == 0
        receiver.stop()
