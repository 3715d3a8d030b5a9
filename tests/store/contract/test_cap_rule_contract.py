"""The cap rule, one table of cases through the pure function (`store.cap_rule.cap_decision`),
through SQLite's reserve and through PostgreSQL's (`nemo_reserve`): the same decision and the
same reason, with the same amount available, every time.

Each case sets up a key and its account as the counters say (a limit, a charge already settled
in this window or an earlier one, a hold still open, credits, the key's state) and asks for one
more hold. A refusal must leave nothing held; an admission holds exactly the amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from nemorouter.money.amounts import MAX_AMOUNT
from nemorouter.service.administration.admin import Admin
from nemorouter.store.base import Store
from nemorouter.store.cap_rule import cap_decision
from nemorouter.store.records import ApiKey, Generation, Hold, ReserveResult
from nemorouter.timeutil import iso, new_id

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # the `admin` fixture's clock
NOW_TEXT = iso(NOW)
WINDOW = "2026-03-02"  # the window of the hold asked for
EARLIER = "2026-03-01"  # a window the key's limit no longer counts
C = 10**9  # a tenth of a US cent in pico-USD: the cases' unit


@dataclass(frozen=True)
class Case:
    name: str
    amount: int
    credits: int = 100 * C
    limit: int | None = None
    spent: int = 0  # settled before, in `spent_in`
    spent_in: str = WINDOW
    held: int = 0  # another hold of the key, still open
    state: str = "live"  # live, revoked, disabled, expired, expires_now, expires_later
    want: tuple[str, int] = ("ok", 0)


CASES = [
    Case("no limit, credits cover it", amount=10 * C),
    Case("no limit, exactly the balance", amount=100 * C),
    Case("no limit, one pico past the balance", amount=100 * C + 1, want=("insufficient_credits", 100 * C)),
    Case(
        "a charge and a hold lower the balance",
        amount=61 * C,
        spent=25 * C,
        held=15 * C,
        want=("insufficient_credits", 60 * C),
    ),
    Case("the balance is what is left after them", amount=60 * C, spent=25 * C, held=15 * C),
    Case("a zero hold on an empty account", amount=0, credits=0),
    Case("an empty account", amount=1, credits=0, want=("insufficient_credits", 0)),
    Case("limit: exactly its room", amount=20 * C, limit=50 * C, spent=20 * C, held=10 * C),
    Case(
        "limit: one pico past its room",
        amount=20 * C + 1,
        limit=50 * C,
        spent=20 * C,
        held=10 * C,
        want=("key_limit_exceeded", 20 * C),
    ),
    Case(
        "limit: an earlier window's usage does not count",
        amount=40 * C,
        limit=50 * C,
        spent=20 * C,
        spent_in=EARLIER,
        held=10 * C,
    ),
    Case(
        "limit: the key's own holds count",
        amount=41 * C,
        limit=50 * C,
        held=10 * C,
        want=("key_limit_exceeded", 40 * C),
    ),
    Case(
        "limit: lowered below the usage, nothing available",
        amount=1,
        limit=5 * C,
        spent=20 * C,
        want=("key_limit_exceeded", 0),
    ),
    Case("limit: a zero hold when the room is zero", amount=0, limit=20 * C, spent=20 * C),
    Case(
        "limit first: over both the limit and the balance",
        amount=200 * C,
        limit=150 * C,
        want=("key_limit_exceeded", 150 * C),
    ),
    Case(
        "the limit affords it, the balance does not",
        amount=120 * C,
        limit=150 * C,
        want=("insufficient_credits", 100 * C),
    ),
    Case("past MAX_AMOUNT, no limit", amount=MAX_AMOUNT + 1, want=("insufficient_credits", 100 * C)),
    Case(
        "past MAX_AMOUNT, a limit", amount=MAX_AMOUNT + 1, limit=50 * C, want=("key_limit_exceeded", 50 * C)
    ),
    Case("revoked", amount=1, state="revoked", want=("key_revoked", 0)),
    Case(
        "revoked before over its limit", amount=90 * C, limit=5 * C, state="revoked", want=("key_revoked", 0)
    ),
    Case("disabled", amount=1, state="disabled", want=("key_disabled", 0)),
    Case("disabled before an empty account", amount=1, credits=0, state="disabled", want=("key_disabled", 0)),
    Case("expired an hour ago", amount=1, state="expired", want=("key_expired", 0)),
    Case("expiring at this very moment", amount=1, state="expires_now", want=("key_expired", 0)),
    Case("expiring later", amount=1, state="expires_later"),
]


def expires_at(state: str) -> str | None:
    return {
        "expired": iso(NOW - timedelta(hours=1)),
        "expires_now": NOW_TEXT,
        "expires_later": iso(NOW + timedelta(hours=1)),
    }.get(state)


def decide(case: Case) -> ReserveResult:
    """The pure rule on the counters the case describes."""
    return cap_decision(
        case.amount,
        NOW_TEXT,
        WINDOW,
        case.state == "revoked",
        case.state == "disabled",
        expires_at(case.state),
        case.limit,
        case.spent_in,
        case.spent,
        case.held,
        case.credits - case.spent - case.held,
    )


def a_hold(key: ApiKey, amount: int, window: str) -> Hold:
    return Hold(new_id("gen_"), key.account_id, key.id, amount, window, "proc-a", NOW_TEXT, model="m/x")


async def key_as(admin: Admin, store: Store, case: Case) -> ApiKey:
    """A key and its account whose counters are the case's, made through the store's own calls."""
    account = await admin.create_account({"name": "acme"})
    if case.credits:
        await store.add_credit(account.id, case.credits, "test", None)
    _, key = await admin.create_key(account.id, {"name": "k"})
    if case.spent:
        first = a_hold(key, case.spent, case.spent_in)
        assert (await store.reserve(first, NOW_TEXT)).ok
        charge = Generation(
            id=first.request_id,
            account_id=key.account_id,
            key_id=key.id,
            model="m/x",
            endpoint="chat",
            streamed=False,
            status="success",
            created_at=NOW_TEXT,
            cost=case.spent,
            hold=case.spent,
        )
        assert await store.settle(first.request_id, charge, case.spent_in)
    if case.held:
        assert (await store.reserve(a_hold(key, case.held, WINDOW), NOW_TEXT)).ok
    fields: dict[str, object] = {}
    if case.limit is not None:
        fields["limit"] = case.limit
    if case.state == "revoked":
        fields["revoked_at"] = NOW_TEXT
    if case.state == "disabled":
        fields["disabled"] = True
    if expires_at(case.state) is not None:
        fields["expires_at"] = expires_at(case.state)
    if fields:
        assert await store.update_key(key.id, fields) is not None
    found = await store.get_key(key.id)
    assert found is not None
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_pure_rule(case: Case) -> None:
    found = decide(case)
    assert (found.reason, found.available) == case.want


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_each_backend_decides_as_the_rule(admin: Admin, store: Store, case: Case) -> None:
    key = await key_as(admin, store, case)
    account = await store.get_account(key.account_id)
    assert account is not None
    before = (account.held, key.held)
    assert before == (case.held, case.held)  # the counters are the case's
    assert key.usage_in_window(WINDOW) == (case.spent if case.spent_in == WINDOW else 0)
    assert account.balance - account.held == case.credits - case.spent - case.held

    found = await store.reserve(a_hold(key, case.amount, WINDOW), NOW_TEXT)

    assert (found.reason, found.available) == case.want
    expected = decide(case)
    assert (found.reason, found.available) == (expected.reason, expected.available)
    after_account, after_key = await store.get_account(key.account_id), await store.get_key(key.id)
    assert after_account is not None and after_key is not None
    taken = case.amount if found.ok else 0  # a refusal holds nothing; an admission exactly the amount
    assert (after_account.held, after_key.held) == (before[0] + taken, before[1] + taken)
