"""A request the gateway refuses after admitting it but before any provider sees it (a header
that cannot be sent: engine/request_head.py, answered 400 as engine/http.py maps it) is on the
record as that refusal, not as an interrupted request: the official `openai` SDK -> the real
gateway, whose only key for a provider was stored before secrets were checked at entry (a
control character in it; no client-controlled value reaches a header any more).

The answer is a 400 naming the record (`x-nemo-request-id`); the record is released without
charge with the refusal as its error; nothing reached the provider; the ledger verifies.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from conftest import SECRET_SCAN, Gateway, Sim, new_gateway, wait_until
from nemorouter.service.container import open_services
from nemorouter.settings import Settings
from nemorouter.timeutil import new_id
from nemorouter.vault import fingerprint

MODEL = "legacy/gpt"
LEGACY_SECRET = "sk-sim-legacy-" + secrets.token_hex(4) + "\x01"
SECRET_SCAN.registry.add(LEGACY_SECRET, "a provider secret stored unchecked")


async def store_unchecked_key(gw: Gateway, provider_name: str, secret: str) -> None:
    """What `add-key` did before it refused secrets that are not printable ASCII."""
    services = await open_services(Settings.from_env(gw.env))
    try:
        provider = await services.store.get_provider(provider_name)
        assert provider is not None
        key_id = new_id("pk_", 8)
        envelope = services.vault.encrypt(provider.name, key_id, secret)
        await services.store.add_provider_key(provider.id, key_id, "legacy", 1, fingerprint(secret), envelope)
    finally:
        await services.store.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(Path(tmp_path_factory.mktemp("refused")), sim)
    gateway.cli("providers", "add", "legacy", "--kind", "openai", "--base-url", f"{sim.url}/v1")
    asyncio.run(store_unchecked_key(gateway, "legacy", LEGACY_SECRET))
    gateway.start()
    model = {
        "id": MODEL,
        "name": "Legacy",
        "context_length": 128000,
        "max_output": 1000,
        "pricing": {"input": "0.15", "output": "0.60"},
        "deployments": [{"provider": "legacy", "upstream_model": "gpt-4o-mini"}],
    }
    added = gateway.admin("POST", "/models", model)
    assert added.status_code == 201, added.text
    yield gateway
    assert gateway.stop() == 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_unsendable_header_is_a_client_error_on_the_record(gw: Gateway, sim: Sim, stream: bool) -> None:
    account = gw.account("1.00")
    marker = f"unsendable-{secrets.token_hex(4)}"
    with gw.openai(gw.key(account)) as client, pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": marker}], stream=stream
        )
    assert "cannot be sent to the provider" in refused.value.message
    assert "sk-sim-legacy" not in refused.value.message  # the header is named, never its value
    request_id = refused.value.response.headers["x-nemo-request-id"]

    def record() -> tuple[str, int, str] | None:
        with sqlite3.connect(gw.data_dir / "nemorouter.db") as db:
            found = db.execute("SELECT status, cost, error FROM generations WHERE id = ?", (request_id,))
            row: tuple[str, int, str] | None = found.fetchone()
        return row

    assert wait_until(lambda: record() is not None), "the answer names the request's own record"
    status, cost, error = record() or ("", -1, "")
    assert status == "error" and cost == 0
    assert error.startswith("refused (400 invalid_request)") and "interrupted" not in error
    assert not [r for r in sim.requests(200) if marker in str(r.get("body"))]
    assert gw.balance(account)["held"] == 0 and gw.verify()["ok"] is True
