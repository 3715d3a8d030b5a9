"""Who is acting, and the audit entry each administrative change leaves.

Every entry point says who acts before it calls a service: the admin API (`admin`), the
management API (`management_key:ID`), the CLI (`cli:USER`), the console (`console:USER`);
anything else (a leak report, a background job) is `system`. The services (`Admin`, alerts)
then record each change they make with that actor, so no entry point can skip the log.
Parameters are recorded by name from an allow-list per call: never a secret (a key is named
by its id, a provider secret by its fingerprint)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from nemorouter.store.audit_records import AuditEntry, AuditRecord
from nemorouter.store.base import Store
from nemorouter.timeutil import iso

SYSTEM = "system"
_ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("nemorouter_actor", default=SYSTEM)
# Never recorded, whatever a caller passes (belt and braces: callers pass allow-listed fields).
_SECRET_NAMES = frozenset({"secret", "key", "token", "password", "signing_secret", "envelope", "hash"})
_MAX_TEXT = 200


def set_actor(actor: str) -> None:
    """Name who acts for the rest of this task (one HTTP request, one CLI command)."""
    _ACTOR.set(actor)


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def current_actor() -> str:
    return _ACTOR.get()


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value][:50]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if str(k) not in _SECRET_NAMES}
    return str(value)[:_MAX_TEXT]


async def record(
    store: Store,
    now: datetime,
    action: str,
    *,
    account_id: str | None = None,
    targets: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> AuditRecord:
    entry = AuditEntry(
        at=iso(now),
        actor=current_actor(),
        action=action,
        account_id=account_id,
        targets=dict(targets or {}),
        params=_plain({k: v for k, v in (params or {}).items() if k not in _SECRET_NAMES}),
    )
    return await store.append_audit(entry)


def view(found: AuditRecord) -> dict[str, Any]:
    """An entry as the admin API shows it."""
    entry = found.entry
    return {
        "seq": found.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "account_id": entry.account_id,
        "targets": entry.targets,
        "params": entry.params,
        "chain": found.chain,
    }
