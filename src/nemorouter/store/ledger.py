"""Ledger invariants, checked from sums every store can compute (DESIGN.md, Holds).

Every account and every key is checked on its own: an overrun (a provider's report above a
hold, the operator's to absorb) is listed by request, never used to excuse a breach elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nemorouter.money import Usd, window_start
from nemorouter.store.records import Account, ApiKey, LedgerReport, Overrun


@dataclass(frozen=True, slots=True)
class LedgerSums:
    """Sums taken in one consistent read; Python ints, never a 64-bit SQL accumulator.

    `overruns` are the recorded ones (table `overruns`); `charged_above_hold` are settled
    requests whose charge exceeds their hold (none since the hold became the ceiling; older
    records may have some). `limit_changes` maps a key to the time its limit last changed."""

    accounts: list[Account]
    keys: list[ApiKey]
    credits_by_account: Mapping[str, int]
    charges_by_account: Mapping[str, int]
    holds_by_account: Mapping[str, int]
    holds_by_key: Mapping[str, int]
    charges_by_key: Mapping[str, int]
    failed_with_charge: Iterable[str]
    overruns: list[Overrun]
    charged_above_hold: list[tuple[str, str, str, str | None, int, int]]  # id, acct, key, pkey, hold, cost
    limit_changes: Mapping[str, str]


def check(sums: LedgerSums, now: datetime) -> LedgerReport:
    problems: list[str] = []
    notes: list[str] = []
    for acct in sums.accounts:
        credits = sums.credits_by_account.get(acct.id, 0)
        charges = sums.charges_by_account.get(acct.id, 0)
        held = sums.holds_by_account.get(acct.id, 0)
        if acct.total_credits != credits:
            problems.append(
                f"account {acct.id}: total_credits {acct.total_credits} != sum of credits {credits}"
            )
        if acct.total_usage != charges:
            problems.append(f"account {acct.id}: total_usage {acct.total_usage} != sum of charges {charges}")
        if acct.held != held:
            problems.append(f"account {acct.id}: held {acct.held} != sum of open holds {held}")
        if held < 0:
            problems.append(f"account {acct.id}: negative holds")
        if acct.balance - acct.held < 0:
            problems.append(f"account {acct.id}: balance {acct.balance} minus held {acct.held} is negative")
    for key in sums.keys:
        held = sums.holds_by_key.get(key.id, 0)
        if key.held != held:
            problems.append(f"key {key.id}: held {key.held} != sum of open holds {held}")
        charged = sums.charges_by_key.get(key.id, 0)
        if key.usage != charged:
            problems.append(f"key {key.id}: usage {key.usage} != sum of its charges {charged}")
        if key.window_usage > key.usage:
            problems.append(f"key {key.id}: usage in window {key.window_usage} exceeds lifetime usage")
        window = window_start(key.limit_reset, now)
        spent = key.usage_in_window(window)
        if key.limit is not None and spent + key.held > key.limit:
            over = f"key {key.id}: spent in window {spent} + held {key.held} > limit {key.limit}"
            if _lowered_in_window(sums.limit_changes.get(key.id), window):
                notes.append(f"{over}: its limit was lowered below what it had spent (not a breach)")
            else:
                problems.append(over)
    for gen_id in sums.failed_with_charge:
        problems.append(f"generation {gen_id}: failed request carries a charge")
    listed = [_overrun_json(o) for o in sums.overruns]
    recorded = {o.request_id for o in sums.overruns}
    for gen_id, acct_id, key_id, provider_key, hold, cost in sums.charged_above_hold:
        if gen_id not in recorded:  # a record from before the hold was the ceiling
            listed.append(
                {
                    "request_id": gen_id,
                    "account_id": acct_id,
                    "key_id": key_id,
                    "provider_key_id": provider_key,
                    "hold": Usd(hold),
                    "charged": Usd(cost),
                    "overrun": Usd(cost - hold),
                    "reason": "charged above its hold",
                }
            )
    listed.sort(key=lambda o: str(o["request_id"]))
    return LedgerReport(problems=problems, overruns=len(listed), overrun_list=listed, notes=notes)


def _lowered_in_window(changed_at: str | None, window: str) -> bool:
    """Whether a key's limit changed within its current budget window (`all`: ever)."""
    if changed_at is None:
        return False
    return window == "all" or changed_at[:10] >= window


def _overrun_json(o: Overrun) -> dict[str, Any]:
    return {
        "request_id": o.request_id,
        "account_id": o.account_id,
        "key_id": o.key_id,
        "model": o.model,
        "provider": o.provider,
        "provider_key_id": o.provider_key_id,
        "hold": Usd(o.hold),
        "charged": Usd(o.charged),
        "reported_cost": Usd(o.reported_cost),
        "overrun": Usd(o.overrun),
        "reason": o.reason,
        "created_at": o.created_at,
    }
