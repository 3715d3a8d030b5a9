"""The hard cap on PostgreSQL: reserve, settle and release, each one transaction of conditional
updates that any number of replicas may run at once (see `postgres.conn` for the locking)."""

from __future__ import annotations

import asyncio
import logging
import operator
from collections import defaultdict
from typing import Any

import asyncpg

from nemorouter.money.amounts import MAX_AMOUNT
from nemorouter.store import rows
from nemorouter.store.base import StoreError
from nemorouter.store.cap_rule import cap_decision
from nemorouter.store.money_values import check_amount_of, check_columns, check_generation
from nemorouter.store.postgres.array_text import array_text
from nemorouter.store.postgres.batches import Batches
from nemorouter.store.postgres.conn import Conn, PostgresConnection
from nemorouter.store.records import Generation, Hold, ReserveResult

# Everything a settle or release fills in on the pending row. `hold` stays as reserved: the
# amount taken off the key and the account is the one that was put on them.
_OUTCOME_COLUMNS = [
    c for c in rows.GENERATION_COLUMNS if c not in ("id", "account_id", "key_id", "created_at", "hold")
]
_OUTCOME_VALUES = operator.attrgetter(*_OUTCOME_COLUMNS)
_COMPLETE = (
    f"UPDATE generations SET {PostgresConnection._sets(_OUTCOME_COLUMNS)}"
    f" WHERE id = ${len(_OUTCOME_COLUMNS) + 1} AND status = 'pending' RETURNING hold, account_id, key_id"
)
_FAIL = (
    "UPDATE generations SET status = 'error' WHERE id = $1 AND status = 'pending'"
    " RETURNING hold, account_id, key_id"
)

# One round trip each (migration 0008): the rows stay locked only while the statements run.
_RESERVE = "SELECT nemo_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
_SETTLE = f"SELECT nemo_settle({', '.join(f'${i}' for i in range(1, len(_OUTCOME_COLUMNS) + 3))})"
# Many reserves, or many settles, in one statement and one commit (migration 0010; `batches`).
# Each column goes as the text of an array, cast by the server (store/postgres/array_text.py).
_BIGINT = {
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "units",
    "cost",
    "price_version_id",
    "latency_ms",
}
_SETTLE_TYPES = ["text", "text"] + [
    "bigint" if c in _BIGINT else "boolean" if c in ("streamed", "cancelled") else "text"
    for c in _OUTCOME_COLUMNS
]
_RESERVE_TYPES = ["bigint"] + ["text"] * 7 + ["boolean", "text", "text"]  # nemo_reserve_many's, in order


def _as_arrays(types: list[str]) -> str:
    return ", ".join(f"${i}::text::{kind}[]" for i, kind in enumerate(types, start=1))


_RESERVE_MANY = f"SELECT nemo_reserve_many({_as_arrays(_RESERVE_TYPES)})"
_SETTLE_MANY = f"SELECT nemo_settle_many({_as_arrays(_SETTLE_TYPES)})"
# A reserve waiting for its batch: nemo_reserve's arguments. A settle: (request id, window,
# outcome values in nemo_settle's order).
Reserve = tuple[int, str, str, str, str, str, str, str, bool, str, str]
Settle = tuple[str, str, tuple[Any, ...]]
# Requests per batch. A batch holds the rows of every key and account it touches until it
# commits, so other replicas' requests on them wait for the whole batch: reserves, the hot path
# of every replica, go in small batches that take turns with theirs; settles, whose commit waits
# for the WAL flush anyway, in larger ones.
_RESERVES_PER_BATCH, _SETTLES_PER_BATCH = 16, 128
_REFUSED = "nemo_refused:"

_UNHOLD_KEY = "UPDATE api_keys SET held = held - $1 WHERE id = $2"
_UNHOLD_ACCOUNT = "UPDATE accounts SET held = held - $1 WHERE id = $2"
log = logging.getLogger("nemorouter.store")


class PostgresMoney(PostgresConnection):
    _reserves: Batches[Reserve, str] | None = None  # made on first use
    _settles: Batches[Settle, bool] | None = None
    _giving_back: set[asyncio.Task[None]] | None = None  # abandoned holds on their way back

    async def reserve(self, hold: Hold, now: str) -> ReserveResult:
        """Hold `hold.amount` against the key's window limit and the account's balance, atomically,
        checking in the same step that the key is live."""
        # Values the driver could not bind fail here, as a StoreError of this request alone; an
        # amount past MAX_AMOUNT is more than any limit or balance affords: refused as SQL would.
        if isinstance(hold.amount, int) and hold.amount > MAX_AMOUNT:
            return await self._why_refused(hold, now, "key")
        check_amount_of(hold.request_id, "hold", hold.amount)
        check_columns(hold.request_id, (hold.request_id, hold.account_id, hold.key_id, hold.model))
        check_columns(hold.request_id, (hold.endpoint, hold.owner, hold.created_at))
        # nemo_reserve: key, then account, then the pending record, in one transaction that does
        # not wait to durability (a hold lost in a crash of the server is one no charge can
        # follow: settle finds no pending record, so the cap is never passed); batched with the
        # reserves waiting beside it.
        if self._reserves is None:
            self._reserves = Batches(
                self._reserve_many,
                self._reserve_one,
                most=_RESERVES_PER_BATCH,
                abandoned=self._reserve_abandoned,
            )
        outcome = await self._reserves.run(
            (
                hold.amount,
                hold.key_id,
                now,
                hold.window,
                hold.account_id,
                hold.request_id,
                hold.model,
                hold.endpoint,
                hold.streamed,
                hold.owner,
                hold.created_at,
            )
        )
        if outcome == "ok":
            return ReserveResult("ok")
        if outcome == "duplicate":
            raise StoreError(f"request {hold.request_id} already has a record")
        return await self._why_refused(hold, now, outcome)

    def _reserve_abandoned(self, item: Reserve, outcome: str) -> None:
        """A reserve that went through after its caller was cancelled: no request will settle or
        release its hold, so it is given back at once, exactly (`unreserve`), rather than left
        open until this process's holds are recovered."""
        if outcome != "ok":
            return
        if self._giving_back is None:
            self._giving_back = set()
        giving = asyncio.ensure_future(self._give_back_abandoned(item[5]))  # item[5]: the request id
        self._giving_back.add(giving)
        giving.add_done_callback(self._giving_back.discard)

    async def _give_back_abandoned(self, request_id: str) -> None:
        try:
            await self.unreserve(request_id)
        except Exception as exc:  # left open: recovered with its owner's holds (docs/failures.md)
            log.error("a hold could not be given back", extra={"request": request_id, "error": str(exc)})

    async def holds_given_back(self) -> None:
        """Wait until every abandoned hold has been given back (closing; tests): the reserves
        on their way first, as one of them may be abandoned yet."""
        if self._reserves is not None:
            await self._reserves.idle()
        while self._giving_back:
            await asyncio.gather(*list(self._giving_back), return_exceptions=True)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.holds_given_back(), 10)
        except TimeoutError:  # left open: recovered with this process's holds
            log.error("abandoned holds were still being given back when the store closed")
        await super().close()

    async def _reserve_one(self, item: Reserve) -> str:
        try:
            return str(await self._call_kept("reserve", _RESERVE, *item, one=True))
        except asyncpg.RaiseError as exc:  # raised after the key was held: all rolled back
            if not str(exc.message).startswith(_REFUSED):
                raise
            return str(exc.message).removeprefix(_REFUSED)

    async def _reserve_many(self, batch: list[Reserve]) -> list[str]:
        columns = [array_text(column) for column in zip(*batch, strict=True)]
        outcomes: list[str] = await self._call_kept("reserve", _RESERVE_MANY, *columns, one=True)
        return outcomes

    async def _why_refused(self, hold: Hold, now: str, what: str) -> ReserveResult:
        """Why `nemo_reserve` refused (`what`: the key or the account), or this store did for an
        amount past MAX_AMOUNT: the cap rule (`cap_rule`, which that function's conditions
        mirror) on the rows as they are now. Rows changed since so that the rule would admit do
        not undo the refusal: it stands, with nothing said to be available."""
        row = await self._one("SELECT * FROM api_keys WHERE id = $1", hold.key_id)
        if row is None:
            return ReserveResult("key_missing")
        key = rows.api_key(row)
        found = await self._one("SELECT * FROM accounts WHERE id = $1", hold.account_id)
        account = rows.account(found) if found else None
        decided = cap_decision(
            hold.amount,
            now,
            hold.window,
            key.revoked_at is not None,
            key.disabled,
            key.expires_at,
            key.limit,
            key.window_start,
            key.window_usage,
            key.held,
            None if account is None else account.balance - account.held,
        )
        if decided.ok:
            return ReserveResult(
                "key_limit_exceeded" if what == "key" and key.limit is not None else "insufficient_credits"
            )
        return decided

    async def settle(self, request_id: str, generation: Generation, window: str) -> bool:
        """Replace the hold with the exact charge and complete the record; once per request
        (false when it has no open hold: settled, released or recovered already). A record
        the columns cannot hold is refused (StoreError) and changes nothing; the running totals
        are NUMERIC, so no sum of charges overflows them."""
        check_generation(generation)
        try:
            if self._settles is None:
                self._settles = Batches(
                    self._settle_many,
                    self._settle_one,
                    most=_SETTLES_PER_BATCH,
                    distinct=lambda item: item[0],
                )
            return await self._settles.run((request_id, window, _OUTCOME_VALUES(generation)))
        except asyncpg.DataError as exc:  # a value the driver or a column refused: all rolled back
            raise StoreError(f"request {request_id}: {exc}; nothing was written") from None

    async def _settle_one(self, item: Settle) -> bool:
        request_id, window, values = item
        return bool(await self._call_kept("settle", _SETTLE, request_id, window, *values, one=True))

    async def _settle_many(self, batch: list[Settle]) -> list[bool]:
        columns = [array_text(column) for column in zip(*(item[2] for item in batch), strict=True)]
        ids, windows = array_text([item[0] for item in batch]), array_text([item[1] for item in batch])
        settled = {row[0] for row in await self._call_kept("settle", _SETTLE_MANY, ids, windows, *columns)}
        return [item[0] in settled for item in batch]

    async def unreserve(self, request_id: str) -> bool:
        """Give a hold back as if never reserved (migration 0012): its record deleted, nothing
        charged; for a request its rate limits refused while its reserve ran beside them
        (service/admission.py). False when it has no open hold."""
        return bool(await self._call_rows("SELECT nemo_unreserve($1)", request_id, one=True))

    async def release(self, request_id: str, generation: Generation | None) -> bool:
        """Drop a hold without charge (the request failed before output); once per request.

        `generation`, when given, carries the failure's details (its cost must be 0).
        """
        if generation is not None:
            check_generation(generation)

        async def op(conn: Conn) -> bool:
            if generation is not None:
                done = await conn.fetchrow(_COMPLETE, *_OUTCOME_VALUES(generation), request_id)
            else:
                done = await conn.fetchrow(_FAIL, request_id)
            if done is None:
                return False
            held, account_id, key_id = done
            await conn.execute(_UNHOLD_KEY, held, key_id)
            await conn.execute(_UNHOLD_ACCOUNT, held, account_id)
            return True

        # A release lost in a crash of the server leaves the hold open, to be recovered.
        try:
            return await self._atomic(op, durable=False)
        except asyncpg.DataError as exc:  # a value the driver or a column refused: all rolled back
            raise StoreError(f"request {request_id}: {exc}; nothing was written") from None

    async def recover_holds(self, owner: str | None) -> list[Hold]:
        """Release the holds of `owner` (every open hold when None: only safe when no other
        process is serving); their records stay, marked `orphaned`, for reconciliation."""
        if owner is None:
            return await self._atomic(lambda conn: orphan_holds(conn, "", ()))
        return await self._atomic(lambda conn: orphan_holds(conn, "owner = $1", (owner,)))

    async def open_holds(self) -> list[Hold]:
        found = await self._all("SELECT * FROM generations WHERE status = 'pending' ORDER BY id")
        return [rows.hold(r) for r in found]

    async def key_spend_since(self, key_id: str, since: str) -> int:
        total = await self._one(
            "SELECT COALESCE(SUM(cost), 0) FROM generations WHERE key_id = $1 AND created_at >= $2"
            " AND cost > 0",
            key_id,
            since,
        )
        assert total is not None
        return int(total[0])


async def orphan_holds(conn: Conn, where: str, params: tuple[object, ...]) -> list[Hold]:
    """Inside a transaction: release the open holds matching `where` (every one when empty),
    marking their records `orphaned`. The one way holds of a dead process are given back: a
    settle or release running at the same time finds the record no longer pending (or this
    finds it settled), so each hold is given back exactly once."""
    sql = "UPDATE generations SET status = 'orphaned' WHERE status = 'pending'"
    found = await conn.fetch(sql + (f" AND {where}" if where else "") + " RETURNING *", *params)
    holds = sorted((rows.hold(r) for r in found), key=lambda h: h.request_id)
    by_key: dict[str, int] = defaultdict(int)
    by_account: dict[str, int] = defaultdict(int)
    for h in holds:
        by_key[h.key_id] += h.amount
        by_account[h.account_id] += h.amount
    for key_id in sorted(by_key):
        await conn.execute(_UNHOLD_KEY, by_key[key_id], key_id)
    for account_id in sorted(by_account):
        await conn.execute(_UNHOLD_ACCOUNT, by_account[account_id], account_id)
    return holds
