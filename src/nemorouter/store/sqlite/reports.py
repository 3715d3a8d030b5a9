"""Usage records and billing reports on SQLite (the usage API, monthly statements, provider
invoices): read-only over the ledger's rows."""

from __future__ import annotations

from collections.abc import Sequence

from nemorouter.money import Prices
from nemorouter.store import rows
from nemorouter.store.records import Generation, UsageRow
from nemorouter.store.sqlite.conn import SqliteConnection


class SqliteReports(SqliteConnection):
    async def list_generations(self, account_id: str, key_id: str | None, limit: int) -> list[Generation]:
        if key_id is None:
            found = self._all(
                "SELECT * FROM generations WHERE account_id = ? ORDER BY id DESC LIMIT ?", (account_id, limit)
            )
        else:
            found = self._all(
                "SELECT * FROM generations WHERE key_id = ? AND account_id = ? ORDER BY id DESC LIMIT ?",
                (key_id, account_id, limit),
            )
        return [rows.generation(r) for r in found]

    async def get_generation(self, generation_id: str) -> Generation | None:
        row = self._one("SELECT * FROM generations WHERE id = ?", (generation_id,))
        return rows.generation(row) if row else None

    # -- billing reports (usage API, monthly statements) -------------------------------------
    # Money is summed here as Python ints over the rows, never with SQLite's SUM (raises on a
    # 64-bit overflow) or TOTAL (a float).

    # A request is on the bill once settled (its cost is the charge); a failure carries no charge
    # unless the ledger is broken, and then it is billed anyway so the bill matches the ledger.
    _CHARGED = "status != 'pending' AND (status IN ('success', 'partial', 'cancelled') OR cost != 0)"

    async def usage_rows(self, account_id: str, since: str, until: str) -> list[UsageRow]:
        sums: dict[tuple[str, str, str, str | None, int | None, str | None], list[int]] = {}
        cursor = self._read(
            "SELECT substr(created_at, 1, 10), key_id, model, provider, price_version_id, unit, prompt_tokens,"
            " completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost, units FROM generations"
            f" WHERE account_id = ? AND created_at >= ? AND created_at < ? AND {self._CHARGED}",
            (account_id, since, until),
        )
        for day, key_id, model, provider, version, unit, *amounts in cursor:
            found = sums.setdefault((day, key_id, model, provider, version, unit), [0] * 8)
            found[0] += 1
            for i, amount in enumerate(amounts, start=1):
                found[i] += amount
        return [UsageRow.of(group, totals) for group, totals in sums.items()]

    async def provider_usage_rows(self, provider: str, since: str, until: str) -> list[UsageRow]:
        """Charged requests served by `provider`, summed per UTC day, vault key (`key_id` holds the
        provider key id), upstream model and price snapshot: what the provider's invoice bills."""
        sums: dict[tuple[str, str, str, str | None, int | None, str | None], list[int]] = {}
        cursor = self._read(
            "SELECT substr(created_at, 1, 10), provider_key_id, upstream_model, provider, price_version_id, unit,"
            " prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost, units"
            f" FROM generations WHERE provider = ? AND created_at >= ? AND created_at < ? AND {self._CHARGED}",
            (provider, since, until),
        )
        for day, key_id, model, name, version, unit, *amounts in cursor:
            found = sums.setdefault((day, key_id or "", model or "", name, version, unit), [0] * 8)
            found[0] += 1
            for i, amount in enumerate(amounts, start=1):
                found[i] += amount
        ordered = sorted(sums.items(), key=lambda kv: kv[0][:3])
        return [UsageRow.of(group, totals) for group, totals in ordered]

    async def charges_before(self, account_id: str, until: str) -> int:
        total = 0
        for (cost,) in self._read(
            "SELECT cost FROM generations WHERE account_id = ? AND created_at < ? AND status != 'pending'"
            " AND cost != 0",
            (account_id, until),
        ):
            total += cost
        return total

    async def price_versions(self, ids: Sequence[int]) -> dict[int, Prices]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        found = self._all(f"SELECT id, pricing FROM price_versions WHERE id IN ({marks})", wanted)
        return {int(r["id"]): rows.prices(r["pricing"]) for r in found}
