"""Store contract (SQLite and PostgreSQL): `verify_ledger` checks every account and key on its own,
lists operator overruns by request, and tells a lowered limit from a breach."""

from __future__ import annotations

from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store
from nemorouter.store.records import Overrun

from ..conftest import RawSql
from .test_money_settle_contract import NOW_TEXT, USD, hold, make_key, outcome


def overrun_of(
    request_id: str, account_id: str, key_id: str, hold_: int, charged: int, reported: int
) -> Overrun:
    return Overrun(
        request_id=request_id,
        account_id=account_id,
        key_id=key_id,
        model="m/x",
        provider="sim",
        provider_key_id="pk_1",
        deployment_id="dep_1",
        hold=hold_,
        charged=charged,
        reported_cost=reported,
        overrun=reported - charged,
        reason="10000000 output tokens reported for a limit of 10",
        raw_usage='{"completion_tokens": 10000000}',
        created_at=NOW_TEXT,
    )


async def test_an_overrun_is_listed_by_request_and_is_not_a_problem(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10", limit="1")
    h = hold(key, USD // 10)
    assert (await store.reserve(h, NOW_TEXT)).ok
    assert await store.settle(h.request_id, outcome(h, USD // 10), "all")  # charged the hold
    reported = 100 * USD + 2**70  # an untrusted report: past any 64-bit amount
    await store.record_overrun(
        overrun_of(h.request_id, key.account_id, key.id, USD // 10, USD // 10, reported)
    )
    await store.record_overrun(
        overrun_of(h.request_id, key.account_id, key.id, USD // 10, USD // 10, reported)
    )
    report = await store.verify_ledger()
    assert (report.ok, report.problems, report.overruns) == (True, [], 1)
    [listed] = report.overrun_list
    assert (listed["request_id"], listed["account_id"], listed["key_id"], listed["provider_key_id"]) == (
        h.request_id,
        key.account_id,
        key.id,
        "pk_1",
    )
    assert listed["overrun"].pico == reported - USD // 10  # exact, beyond 64 bits
    [kept] = await store.list_overruns("sim")
    assert (kept.reported_cost, kept.overrun) == (reported, reported - USD // 10)
    assert await store.list_overruns("other") == []


async def test_one_overrun_never_excuses_another_accounts_breach(
    admin: Admin, store: Store, raw_sql: RawSql
) -> None:
    first = await make_key(admin, "10")
    h = hold(first, USD)
    assert (await store.reserve(h, NOW_TEXT)).ok
    assert await store.settle(h.request_id, outcome(h, USD), "all")
    await store.record_overrun(overrun_of(h.request_id, first.account_id, first.id, USD, USD, 5 * USD))
    second = await make_key(admin, "1", limit="0.5")
    spent = hold(second, USD // 2)
    assert (await store.reserve(spent, NOW_TEXT)).ok
    assert await store.settle(spent.request_id, outcome(spent, USD // 2), "all")
    # Behind the store's back: the second account and key are charged past their balance and limit.
    await raw_sql("UPDATE generations SET cost = ? WHERE id = ?", 2 * USD, spent.request_id)
    await raw_sql("UPDATE accounts SET total_usage = ? WHERE id = ?", 2 * USD, second.account_id)
    await raw_sql("UPDATE api_keys SET usage = ?, window_usage = ? WHERE id = ?", 2 * USD, 2 * USD, second.id)
    report = await store.verify_ledger()
    assert report.ok is False
    assert any(p.startswith(f"account {second.account_id}: balance") for p in report.problems), (
        report.problems
    )
    assert any(p.startswith(f"key {second.id}: spent in window") for p in report.problems), report.problems
    assert not any(first.account_id in p or first.id in p for p in report.problems)
    # the tampered charge is above its hold: listed with the operator's overruns as well
    assert {o["request_id"] for o in report.overrun_list} == {h.request_id, spent.request_id}


async def test_a_limit_lowered_below_the_spend_is_a_note_not_a_breach(admin: Admin, store: Store) -> None:
    key = await make_key(admin, "10", limit="2")
    h = hold(key, USD)
    assert (await store.reserve(h, NOW_TEXT)).ok
    assert await store.settle(h.request_id, outcome(h, USD), "all")
    await store.update_key(key.id, {"limit": USD // 2})  # lowered below the $1 already spent
    report = await store.verify_ledger()
    assert (report.ok, report.problems) == (True, [])
    [note] = report.notes
    assert note.startswith(f"key {key.id}: spent in window {USD} + held 0 > limit {USD // 2}")
    assert "lowered" in note


async def test_a_key_over_its_unchanged_limit_is_a_breach(
    admin: Admin, store: Store, raw_sql: RawSql
) -> None:
    key = await make_key(admin, "10", limit="1")
    h = hold(key, USD // 2)
    assert (await store.reserve(h, NOW_TEXT)).ok
    assert await store.settle(h.request_id, outcome(h, USD // 2), "all")
    await raw_sql(
        "UPDATE api_keys SET limit_pico = ? WHERE id = ?", USD // 4, key.id
    )  # not through the store
    report = await store.verify_ledger()
    assert report.ok is False and report.notes == []
    assert report.problems == [f"key {key.id}: spent in window {USD // 2} + held 0 > limit {USD // 4}"]
