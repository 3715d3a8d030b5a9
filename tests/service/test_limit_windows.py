"""Key limits per window, with the service's clock injected: the real store, the real gateway flow
and the real simulator over HTTP; only time is ours to move."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import Sim
from nemorouter.errors import PaymentRequired
from nemorouter.frontdoors.openai_chat import parse_chat
from nemorouter.service.container import Services, close_services, initialize, open_services, start_gateway
from nemorouter.settings import Settings

BODY = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}'


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def gateway_with(tmp_path: Path, sim: Sim, clock: Clock) -> Services:
    settings = Settings.from_env({"NEMO_DATA_DIR": str(tmp_path), "NEMO_ADMIN_TOKEN": "t"})
    services = await open_services(settings, create=True, clock=clock)
    await initialize(services)
    admin = services.admin
    await admin.create_provider({"name": "sim", "kind": "openai", "base_url": f"{sim.url}/v1"})
    await admin.add_provider_key("sim", {"secret": "sk-sim-" + os.urandom(8).hex()})
    await admin.import_models("openai", "sim")
    await start_gateway(services, owner="test")
    return services


async def spend_until_refused(services: Services, key_id: str, account_id: str) -> int:
    """Send requests until the key's limit refuses one; returns how many were served."""
    assert services.gateway is not None
    key = await services.admin.key(key_id)
    for served in range(50):
        try:
            await services.gateway.chat(key, parse_chat(BODY))
        except PaymentRequired as refused:
            assert refused.type == "key_limit_exceeded"
            return served
    raise AssertionError("the limit never refused")


@pytest.mark.parametrize(
    ("reset", "before", "after"),
    [
        ("daily", datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC), datetime(2026, 12, 2, 0, 0, 0, tzinfo=UTC)),
        # 2026-12-06 is a Sunday; weeks start on Monday.
        ("weekly", datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC), datetime(2026, 12, 7, 0, 0, 0, tzinfo=UTC)),
        (
            "monthly",
            datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC),
        ),
    ],
)
async def test_a_limit_resets_exactly_at_its_window_boundary(
    tmp_path: Path, sim: Sim, reset: str, before: datetime, after: datetime
) -> None:
    clock = Clock(before)
    services = await gateway_with(tmp_path, sim, clock)
    try:
        account = await services.admin.create_account({"name": "w"})
        await services.admin.add_credit(account.id, {"amount": "10"})
        # About three requests' worth of worst case (each holds ~$0.0000126, costs ~$0.0000076).
        _, key = await services.admin.create_key(
            account.id, {"name": "w", "limit": "0.00004", "limit_reset": reset}
        )
        served = await spend_until_refused(services, key.id, account.id)
        assert served >= 3
        view = await services.admin.key_view(await services.admin.key(key.id))
        spent = view[f"usage_{reset}"].pico
        assert spent == view["usage"].pico > 0
        assert view["limit_remaining"].pico == 40_000_000 - spent

        clock.now = after.replace(microsecond=0) - (after - before) / 2  # still the old window
        with pytest.raises(PaymentRequired):
            await services.gateway.chat(await services.admin.key(key.id), parse_chat(BODY))  # type: ignore[union-attr]

        clock.now = after  # the new window: the limit is whole again
        view = await services.admin.key_view(await services.admin.key(key.id))
        assert view[f"usage_{reset}"].pico == 0
        assert view["usage"].pico == spent  # lifetime usage stays
        assert view["limit_remaining"].pico == 40_000_000
        assert await spend_until_refused(services, key.id, account.id) == served
        report = await services.store.verify_ledger()
        assert report.ok, report.problems
    finally:
        await close_services(services)
