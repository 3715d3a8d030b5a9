"""The ledger's hash chain, pure: what a seal covers, its digest, and the check of a chain.

Every store seals the same canonical fields the same way, so a chain is checked alike
whatever the backend. A seal covers the money of an entry (amounts, ids, account, times,
token counts), not operational notes (latency, error text, raw provider usage).

So a final entry is immutable in these fields: a correction is a new entry (a credit), never an
UPDATE of a sealed row, which `verify_ledger` would report as tampering.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64
# The canonical fields of each kind of entry, the id first.
KINDS = ("credit", "generation")
CREDIT_FIELDS = ("id", "account_id", "amount", "reason", "idempotency_key", "created_at")
GENERATION_FIELDS = (
    "id",
    "account_id",
    "key_id",
    "model",
    "provider",
    "upstream_model",
    "deployment_id",
    "provider_key_id",
    "endpoint",
    "streamed",
    "cancelled",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost",
    "hold",
    "price_version_id",
    "created_at",
    "unit",
    "units",
)
FIELDS = {"credit": CREDIT_FIELDS, "generation": GENERATION_FIELDS}
# A generation in one of these states carries no charge: it is never sealed.
UNCHARGED = ("pending", "error", "orphaned")


def digest(kind: str, values: Sequence[Any]) -> str:
    """SHA-256 (hex) of an entry's canonical fields (`values`, in the order of `FIELDS[kind]`):
    the JSON array of the kind and the values. A generation with no units (any priced per token,
    every one sealed before units existed) is hashed without its two unit fields, so the chains
    sealed before them still verify."""
    if kind == "generation" and not values[-1]:
        values = values[:-2]
    return hashlib.sha256(orjson.dumps([kind, *values])).hexdigest()


def link(previous_chain: str, entry_digest: str) -> str:
    """The next chain value: SHA-256 of the previous chain and the digest (hex text, concatenated)."""
    return hashlib.sha256((previous_chain + entry_digest).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Seal:
    seq: int
    kind: str
    row_id: str
    digest: str
    chain: str


def check_chain(seals: Iterable[tuple[Seal, str | None]]) -> list[str]:
    """Problems of a chain, given each seal (in `seq` order) with its entry's digest as it is
    now (None: the entry is gone). Each link is checked against the stored previous chain, so
    one edit is named where it happened instead of breaking every later link."""
    problems: list[str] = []
    previous_seq, previous_chain = 0, GENESIS
    for seal, current in seals:
        name = f"{seal.kind} {seal.row_id}"
        if seal.seq != previous_seq + 1:
            first, last = previous_seq + 1, seal.seq - 1
            missing = str(first) if first == last else f"{first}..{last}"
            problems.append(f"ledger seals {missing} missing before {name}: sealed entries were removed")
        if current is None:
            problems.append(f"{name}: removed after it was sealed (seal {seal.seq})")
        elif current != seal.digest:
            problems.append(f"{name}: changed after it was sealed (seal {seal.seq})")
        if link(previous_chain, seal.digest) != seal.chain:
            problems.append(
                f"{name}: seal {seal.seq} does not follow from seal {previous_seq}"
                " (the chain was altered, cut or reordered here)"
            )
        previous_seq, previous_chain = seal.seq, seal.chain
    return problems


def chain_rows(
    previous: str, entries: Sequence[tuple[str, Sequence[Any]]], first_seq: int
) -> list[tuple[int, str, str, str, str]]:
    """(seq, kind, row id, digest, chain) for `entries` (kind, canonical values: the id first)
    appended after chain value `previous`."""
    out = []
    for offset, (kind, values) in enumerate(entries):
        entry = digest(kind, values)
        previous = link(previous, entry)
        out.append((first_seq + offset, kind, str(values[0]), entry, previous))
    return out
