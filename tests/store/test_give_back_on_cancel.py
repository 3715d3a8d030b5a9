"""A request cancelled at any moment holds nothing afterwards and frees its concurrency slot.

On PostgreSQL a reserve is a round trip, and with Redis limits the admission is one too, sent
beside the reserve when no other admission is out (service/admission.py). A request's task
cancelled while either is out (the server stopping, a deadline) must not leave behind a hold
that no one will settle (PostgreSQL's batch still runs it: `store/postgres/batches.py` hands it
to `abandoned`, which gives it back), nor a concurrency slot that no one will free (Redis's
script still takes it: `limits/redis.py` gives it back), nor a ticket of the local limiter.

The real gateway flow, in process, on a real PostgreSQL database, with the real Redis or the
local limiter, against the simulator over HTTP; requests answered whole, and streamed ones read
as the server's response reads them (a client that leaves cancels the reading: the relay's
`aclose` settles it). The test chooses only when to cancel: after 1, 2, 3, ... turns of the
event loop, through a whole request's life, each followed by a request that a leaked slot
(`max_concurrency` 1) would refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conftest import Sim
from nemorouter.errors import RateLimited
from nemorouter.frontdoors.anthropic_messages.serve import messages
from nemorouter.frontdoors.openai_chat import parse_chat
from nemorouter.service.container import Services, close_services, initialize, open_services, start_gateway
from nemorouter.service.gateway import JsonReply, StreamReply
from nemorouter.settings import Settings
from nemorouter.store.records import ApiKey

from .conftest import create_database, database_url, drop_database

REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BODY = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}'
STREAM = BODY[:-1] + b', "stream": true}'
MESSAGES_STREAM = b'{"model": "openai/gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": true}'


@pytest.fixture(params=["postgres+redis", "postgres+local", "sqlite+redis"])
async def services(request: pytest.FixtureRequest, tmp_path: Path, sim: Sim) -> AsyncIterator[Services]:
    backend, limits = str(request.param).split("+")
    env = {"NEMO_DATA_DIR": str(tmp_path), "NEMO_ADMIN_TOKEN": "t"}
    database = await create_database() if backend == "postgres" else None
    if database is not None:
        env["NEMO_DATABASE_URL"] = database_url(database)
    if limits == "redis":
        env |= {"NEMO_REDIS_URL": REDIS, "NEMO_REDIS_PREFIX": f"nemo-test-{secrets.token_hex(6)}:"}
    found = await open_services(Settings.from_env(env), create=True)
    try:
        await initialize(found)
        await found.admin.create_provider({"name": "sim", "kind": "openai", "base_url": f"{sim.url}/v1"})
        await found.admin.add_provider_key("sim", {"secret": "sk-sim-" + os.urandom(8).hex()})
        await found.admin.import_models("openai", "sim")
        await start_gateway(found, owner="test")
        assert found.gateway is not None
        assert found.gateway.admission.limiter.shared is (limits == "redis")
        yield found
    finally:
        await close_services(found)
        if database is not None:
            await drop_database(database)


_HELD = (
    "SELECT (SELECT held FROM accounts WHERE id = {0}), (SELECT held FROM api_keys WHERE id = {1}),"
    " (SELECT count(*) FROM generations WHERE account_id = {0} AND status = 'pending')"
)


async def _books(services: Services, account_id: str, key_id: str) -> tuple[int, int, int]:
    """What the database holds for the account and the key, and the account's open records."""
    url = services.settings.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            found = db.execute(_HELD.format("?1", "?2"), (account_id, key_id)).fetchone()
        return int(found[0]), int(found[1]), int(found[2])
    con = await asyncpg.connect(url, timeout=10)
    try:
        row = await con.fetchrow(_HELD.format("$1", "$2"), account_id, key_id)
    finally:
        await con.close()
    return int(row[0]), int(row[1]), int(row[2])


async def _quiet(services: Services) -> None:
    """Wait for what a cancelled request leaves to be done in the background: holds given back
    by the admission or the store, and the limiter's finishes."""
    assert services.gateway is not None
    admission = services.gateway.admission
    while admission._later:
        await asyncio.gather(*list(admission._later), return_exceptions=True)
    given_back = getattr(services.store, "holds_given_back", None)  # PostgreSQL's abandoned holds
    if given_back is not None:
        await given_back()
    flush = getattr(admission.limiter, "flush", None)
    if flush is not None:
        await flush()


async def _nothing_held(services: Services, account_id: str, key_id: str) -> tuple[int, int, int]:
    """The books once the last batch has committed (SQLite's lingers up to `LINGER` when no one
    waits for it): polled, as a hold left behind never goes away on its own."""
    deadline = time.monotonic() + 5
    while (found := await _books(services, account_id, key_id)) != (0, 0, 0) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return found


async def _whole(services: Services, key: ApiKey) -> None:
    """One request, answered whole."""
    assert services.gateway is not None
    await services.gateway.chat(key, parse_chat(BODY))


async def _read_to_end(reply: JsonReply | StreamReply) -> None:
    """A stream read to its end as the server's response reads it: a client that leaves cancels
    the reading (`app/streaming.py`), which then closes it (and the relay under it)."""
    assert isinstance(reply, StreamReply)
    chunks = reply.chunks
    try:
        async for _ in chunks:
            pass
    finally:
        await chunks.aclose()


async def _streamed(services: Services, key: ApiKey) -> None:
    """One streamed request."""
    assert services.gateway is not None
    await _read_to_end(await services.gateway.chat(key, parse_chat(STREAM)))


async def _messages_streamed(services: Services, key: ApiKey) -> None:
    """One streamed request through the Anthropic Messages door (Claude Code's): its events are a
    conversion of the relay's, and closing them closes the relay."""
    assert services.gateway is not None
    await _read_to_end(await messages(services.gateway, key, MESSAGES_STREAM))


async def _turns_of_a_request(services: Services, key: ApiKey, send: Any) -> int:
    """Turns of the event loop one whole request takes here."""
    task = asyncio.ensure_future(send(services, key))
    turns = 0
    while not task.done():
        await asyncio.sleep(0)
        turns += 1
    task.result()
    await _quiet(services)
    return turns


def _moments(turns: int) -> list[int]:
    """When to cancel a request of `turns` turns: every one of the first turns (admission and
    reserve are there), then every 1/30th to a little past its end."""
    return sorted({*range(1, 40), *range(40, turns + 20, max(1, turns // 30))})


async def _cancelled_after(moment: int, request: Coroutine[Any, Any, None]) -> bool:
    """Run `request`, cancelled after `moment` turns of the loop: whether it was still running."""
    task = asyncio.ensure_future(request)
    for _ in range(moment):
        await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


@pytest.mark.parametrize(
    "send", [_whole, _streamed, _messages_streamed], ids=["whole", "streamed", "messages-streamed"]
)
async def test_a_request_cancelled_at_any_moment_holds_nothing_and_frees_its_slot(
    services: Services, send: Any
) -> None:
    admin, gateway = services.admin, services.gateway
    assert gateway is not None
    account = await admin.create_account({"name": "cancelled"})
    await admin.add_credit(account.id, {"amount": "10"})
    _, created = await admin.create_key(
        account.id, {"name": "c", "limit": "1", "max_concurrency": 1, "rpm": 100_000, "tpm": 100_000_000}
    )
    key = await admin.key(created.id)
    turns = await _turns_of_a_request(services, key, send)
    cancelled = 0
    for moment in _moments(turns):
        cancelled += await _cancelled_after(moment, send(services, key))
        await _quiet(services)
        assert await _nothing_held(services, account.id, key.id) == (0, 0, 0), (
            f"cancelled after {moment} turns"
        )
        assert gateway.metrics.open_holds == 0, f"the gauge, cancelled after {moment} turns"
        # Its slot is free: the next request (max_concurrency 1) is served, and settles.
        await send(services, key)
        await _quiet(services)
        assert await _nothing_held(services, account.id, key.id) == (0, 0, 0), f"served after {moment} turns"
    assert cancelled >= 10, (cancelled, turns)  # the sweep fell inside requests, not only after them
    report = await services.store.verify_ledger()
    assert report.ok, report.problems


@pytest.mark.parametrize("services", ["postgres+redis"], indirect=True)
async def test_a_refused_request_cancelled_at_any_moment_holds_nothing(services: Services) -> None:
    """A request its rate limit refuses while its reserve ran beside the admission gives the hold
    back before its 429; cancelled at any moment of that, the hold still goes back."""
    admin, gateway = services.admin, services.gateway
    assert gateway is not None
    account = await admin.create_account({"name": "refused"})
    await admin.add_credit(account.id, {"amount": "10"})
    _, created = await admin.create_key(account.id, {"name": "r", "limit": "1", "rpm": 1})
    key = await admin.key(created.id)
    await _whole(services, key)  # the key's one request a minute

    async def refused() -> int:
        """One request, refused by the limit; the turns it took."""
        gateway.admission._refused_until.clear()  # so that its reserve goes beside its admission
        task = asyncio.ensure_future(_whole(services, key))
        turns = 0
        while not task.done():
            await asyncio.sleep(0)
            turns += 1
        with pytest.raises(RateLimited):
            task.result()
        return turns

    turns = await refused()
    await _quiet(services)
    cancelled = 0
    for moment in _moments(turns):
        gateway.admission._refused_until.clear()
        with contextlib.suppress(RateLimited):  # refused before the moment came
            cancelled += await _cancelled_after(moment, _whole(services, key))
        await _quiet(services)
        assert await _nothing_held(services, account.id, key.id) == (0, 0, 0), (
            f"cancelled after {moment} turns"
        )
        assert gateway.metrics.open_holds == 0
    assert cancelled >= 5, (cancelled, turns)
    report = await services.store.verify_ledger()
    assert report.ok, report.problems
