"""The rows of bench/run.py: a measured row, the median of its rounds, and how rows are judged
against the floor of as many workers and printed."""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from wrk_load import SOCKET_ERRORS

CONNECTIONS = 64
SHARED_WORKERS = 2


@dataclass
class Result:
    name: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    rounds_rps: list[float | None] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.error is None and self.rps is not None


def combine(name: str, rounds: list[Result]) -> Result:
    """Medians over rounds (robust to a noisy neighbour in one of them); counts are summed."""
    valid = [r for r in rounds if r.valid]
    if len(valid) != len(rounds):
        bad = next(r for r in rounds if not r.valid)
        return Result(name, error=bad.error or "not measured")

    def median(values: list[float | None]) -> float | None:
        present = sorted(v for v in values if v is not None)
        return statistics.median(present) if present else None

    out = Result(
        name,
        rps=median([r.rps for r in rounds]),
        p50_ms=median([r.p50_ms for r in rounds]),
        p99_ms=median([r.p99_ms for r in rounds]),
    )
    out.requests = sum(r.requests for r in rounds)
    out.socket_errors = {k: sum(r.socket_errors.get(k, 0) for r in rounds) for k in SOCKET_ERRORS}
    out.latency_ms = {
        k: v for k in rounds[0].latency_ms if (v := median([r.latency_ms.get(k) for r in rounds])) is not None
    }
    out.rounds_rps = [r.rps for r in rounds]
    return out


@dataclass(frozen=True)
class Target:
    """A row judged against a baseline row of as many workers (issue 23's acceptance)."""

    row: str
    baseline: str
    title: str
    rps_min_pct: float
    p50_max_diff_ms: float
    p99_max_diff_ms: float | None = None


TARGETS = (
    Target("nemorouter", "floor", "NemoRouter (SQLite, 1 worker) vs floor:", 85.0, 1.0, 1.0),
    Target(
        "nemo-pg",
        "floor2",
        f"NemoRouter on PostgreSQL + Redis ({SHARED_WORKERS} workers) vs floor2 ({SHARED_WORKERS} workers):",
        40.0,
        1.0,
    ),
)


def compare(base: Result, row: Result, target: Target) -> dict[str, Any]:
    """`row` against its baseline; verdicts only when both rows are valid."""
    out: dict[str, Any] = {"row": target.row, "baseline": target.baseline, "valid": False}
    out.update(rps_min_pct=target.rps_min_pct, p50_max_diff_ms=target.p50_max_diff_ms)
    out.update(p99_max_diff_ms=target.p99_max_diff_ms)
    if (
        not (base.valid and row.valid)
        or not base.rps
        or None in (base.p50_ms, row.p50_ms, base.p99_ms, row.p99_ms)
    ):
        return {**out, "rps_ratio_pct": None, "p50_diff_ms": None, "p99_diff_ms": None}
    assert base.p50_ms is not None and row.p50_ms is not None
    assert base.p99_ms is not None and row.p99_ms is not None
    ratio = 100.0 * (row.rps or 0.0) / base.rps
    p50, p99 = row.p50_ms - base.p50_ms, row.p99_ms - base.p99_ms
    out.update(
        valid=True, rps_ratio_pct=round(ratio, 1), p50_diff_ms=round(p50, 3), p99_diff_ms=round(p99, 3)
    )
    out.update(rps_pass=ratio >= target.rps_min_pct, p50_pass=p50 <= target.p50_max_diff_ms)
    if target.p99_max_diff_ms is not None:
        out["p99_pass"] = p99 <= target.p99_max_diff_ms
    return out


def ratio_pct(row: Result, base: Result) -> float | None:
    return round(100.0 * row.rps / base.rps, 1) if row.valid and base.valid and row.rps and base.rps else None


def ratios(results: dict[str, Result]) -> dict[str, float | None]:
    """Every row's req/s as a percentage of the 1-worker floor's, and of the 2-worker floor's."""
    out: dict[str, float | None] = {}
    for name, row in results.items():
        out[f"{name}_vs_floor_pct"] = ratio_pct(row, results["floor"])
        out[f"{name}_vs_floor2_pct"] = ratio_pct(row, results["floor2"])
    return out


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(results: dict[str, Result], comparisons: list[dict[str, Any]], opts: argparse.Namespace) -> None:
    print(
        f"\nNemoRouter benchmark: wrk -t1, throughput {opts.seconds}s @{CONNECTIONS} conns, "
        f"latency {opts.latency_seconds}s @1 conn, {os.cpu_count()} CPUs; "
        f"medians of {opts.rounds} alternating round(s)"
        + ("  [--fake-nemorouter: the nemorouter row is a floor proxy]" if opts.fake_nemorouter else "")
    )
    print(
        f"\n{'config':<12}{f'req/s @{CONNECTIONS}':>12}{'% floor':>9}{'% floor2':>10}{'p50 ms @1':>12}{'p99 ms @1':>12}  note"
    )
    for r in results.values():
        note = r.error.splitlines()[0] if r.error else ""
        note = note if len(note) <= 90 else note[:87] + "..."
        if r.valid and any(r.socket_errors.values()):
            note = "socket errors: " + ", ".join(f"{k} {v}" for k, v in r.socket_errors.items() if v)
        if not note and len(r.rounds_rps) > 1:
            note = "rounds req/s: " + ", ".join(fmt(v, 0) for v in r.rounds_rps)
        pct = fmt(ratio_pct(r, results["floor"]), 1), fmt(ratio_pct(r, results["floor2"]), 1)
        print(
            f"{r.name:<12}{fmt(r.rps, 0):>12}{pct[0]:>9}{pct[1]:>10}{fmt(r.p50_ms, 3):>12}{fmt(r.p99_ms, 3):>12}"
            f"  {note}".rstrip()
        )
    for cmp, target in zip(comparisons, TARGETS, strict=True):
        print_comparison(target.title, cmp)


def print_comparison(title: str, cmp: dict[str, Any]) -> None:
    print(f"\n{title}")
    if not cmp["valid"]:
        print(f"  n/a: {cmp['baseline']} or this row has no valid measurement (see above)")
        return
    verdict = {True: "PASS", False: "FAIL"}
    base = cmp["baseline"]
    print(
        f"  req/s  {cmp['rps_ratio_pct']:>7.1f} % of {base:<7} target >= {cmp['rps_min_pct']:.0f} %"
        f"     {verdict[cmp['rps_pass']]}"
    )
    for p in ("p50", "p99"):
        limit = cmp[f"{p}_max_diff_ms"]
        judged = (
            f"target <= +{limit:.1f} ms  {verdict[cmp[f'{p}_pass']]}" if limit is not None else "(no target)"
        )
        print(f"  {p} @1 {cmp[f'{p}_diff_ms']:>+7.3f} ms vs {base:<6} {judged}")
