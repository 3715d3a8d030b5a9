"""Ledger invariants, checked from sums every store can compute (DESIGN.md, Holds)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from nemorouter.money import window_start
from nemorouter.store.records import Account, ApiKey, LedgerReport


@dataclass(frozen=True, slots=True)
class LedgerSums:
    """Sums taken in one consistent read; Python ints, never a 64-bit SQL accumulator."""

    accounts: list[Account]
    keys: list[ApiKey]
    credits_by_account: Mapping[str, int]
    charges_by_account: Mapping[str, int]
    holds_by_account: Mapping[str, int]
    holds_by_key: Mapping[str, int]
    charges_by_key: Mapping[str, int]
    failed_with_charge: Iterable[str]
    overruns: int


def check(sums: LedgerSums, now: datetime) -> LedgerReport:
    problems: list[str] = []
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
        if acct.balance - acct.held < 0 and sums.overruns == 0:
            problems.append(f"account {acct.id}: balance minus held is negative without a recorded overrun")
    for key in sums.keys:
        held = sums.holds_by_key.get(key.id, 0)
        if key.held != held:
            problems.append(f"key {key.id}: held {key.held} != sum of open holds {held}")
        charged = sums.charges_by_key.get(key.id, 0)
        if key.usage != charged:
            problems.append(f"key {key.id}: usage {key.usage} != sum of its charges {charged}")
        if key.window_usage > key.usage:
            problems.append(f"key {key.id}: usage in window {key.window_usage} exceeds lifetime usage")
        spent = key.usage_in_window(window_start(key.limit_reset, now))
        if key.limit is not None and spent + key.held > key.limit and sums.overruns == 0:
            problems.append(f"key {key.id}: spent in window {spent} + held {key.held} > limit {key.limit}")
    for gen_id in sums.failed_with_charge:
        problems.append(f"generation {gen_id}: failed request carries a charge")
    return LedgerReport(problems=problems, overruns=sums.overruns)
