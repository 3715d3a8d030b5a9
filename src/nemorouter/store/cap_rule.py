"""The hard cap's rule, in one place: may this hold be taken, and if not, why.

A pure function of the counters, so both backends decide alike and one table of cases can check
them (tests/store/contract/test_cap_rule_contract.py): SQLite's reserve calls it on the counters
it mirrors in memory (`sqlite.money_mirror`, under the write lock); PostgreSQL's `nemo_reserve`
(postgres/migrations/0008_money_functions.sql) applies the same conditions as the WHERE clauses
of its conditional updates, in the same order, and its store calls this to say why it refused.
Compiled with the request path (tools/build_native.py): one native call, one result, per reserve.
"""

from __future__ import annotations

from nemorouter.store.records import ReserveResult


def cap_decision(
    amount: int,
    now: str,
    window: str,
    revoked: bool,
    disabled: bool,
    expires_at: str | None,
    limit: int | None,
    window_start: str,
    window_usage: int,
    key_held: int,
    available: int | None,
) -> ReserveResult:
    """`ok` when the key is live at `now` (not revoked, not disabled, not expired), its limit
    (None: none) affords `amount` in `window` beside what it already used there and holds, and
    the account's balance (`available`: credits - usage - held; None: no account) covers it.
    Otherwise the first condition that fails names the refusal, with what could have been held."""
    if revoked:
        return ReserveResult("key_revoked")
    if disabled:
        return ReserveResult("key_disabled")
    if expires_at is not None and expires_at <= now:
        return ReserveResult("key_expired")
    if limit is not None:
        room = limit - (window_usage if window_start == window else 0) - key_held
        if amount > room:
            return ReserveResult("key_limit_exceeded", max(0, room))
    if available is None:
        return ReserveResult("insufficient_credits", 0)
    if available < amount:
        return ReserveResult("insufficient_credits", max(0, available))
    return ReserveResult("ok")
