"""Alerts out and the ledger's seals on PostgreSQL: not ported yet (SQLite has them, migrations
0003 and 0004). Until they are, this store keeps no webhook settings, queues no alert and seals
nothing, and says so: setting a webhook is refused with a clear error, and the first sealing
round logs that the ledger is not sealed. Everything else the protocol asks works as on SQLite.
"""

from __future__ import annotations

import logging
from typing import Any

from nemorouter.store.alert_records import Alert, AlertSettings, OutboxItem
from nemorouter.store.base import StoreError

log = logging.getLogger("nemorouter.store")


class PostgresLater:
    _warned_seals = False

    async def get_alert_settings(self, account_id: str) -> AlertSettings | None:
        return None

    async def put_alert_settings(
        self, account_id: str, url: str, threshold: int | None, envelope: str, now: str
    ) -> tuple[AlertSettings, bool]:
        raise StoreError("webhook alerts are not available on PostgreSQL yet")

    async def enqueue_alert(self, alert: Alert) -> bool:
        return False

    async def low_balance_watch(self) -> list[tuple[AlertSettings, int]]:
        return []

    async def set_low_balance(self, account_id: str, alert: Alert | None, now: str) -> bool:
        return False

    async def claim_alerts(self, now: str, lease_until: str, limit: int) -> list[OutboxItem]:
        return []

    async def alert_attempted(
        self, alert_id: str, *, delivered: bool, now: str, retry_at: str | None, error: str | None
    ) -> None:
        return None

    async def list_alerts(self, account_id: str, limit: int) -> list[dict[str, Any]]:
        return []

    async def seal_ledger(self, now_ns: int | None = None) -> int:
        if not self._warned_seals:
            self._warned_seals = True
            log.warning("the ledger's hash-chain seals are not available on PostgreSQL yet")
        return 0
