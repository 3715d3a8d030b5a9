"""The bundled price catalog (src/nemorouter/data/catalog.csv), copied from the reference list prices."""

from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Any

from nemorouter.store.records import CatalogEntry

_PRICE_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")


def _pricing(row: dict[str, str]) -> dict[str, Any]:
    pricing: dict[str, Any] = {name: row[name] for name in _PRICE_FIELDS if row[name]}
    if row["long_context_threshold"]:
        tier = {
            name: row[f"long_context_{name}"] for name in _PRICE_FIELDS if row.get(f"long_context_{name}")
        }
        pricing["long_context"] = {"threshold": int(row["long_context_threshold"]), **tier}
    if row.get("units"):  # `name=USD;name=USD`: USD per one unit (money/prices.py)
        pricing["units"] = dict(part.split("=", 1) for part in row["units"].split(";"))
    return pricing


def bundled_catalog() -> list[CatalogEntry]:
    text = (resources.files("nemorouter.data") / "catalog.csv").read_text()
    return [
        CatalogEntry(
            vendor=row["vendor"],
            model_id=row["model_id"],
            mode=row["mode"],
            pricing=_pricing(row),
            context_length=int(row["context_length"]),
            max_output=int(row["max_output"]),
            source=row["source"],
        )
        for row in csv.DictReader(io.StringIO(text))
    ]
