"""The thousands-of-streams scenario of `make bench`: what holding many slow streams open costs.

An LLM gateway mostly waits: a chat stream stays open for seconds while the model sends a token at
a time. Here `--streams` (2,000) streaming chat requests are held open together for
`--stream-seconds` (30), the stub sending one event every 100 ms to each, through one process of
the floor proxy and then through one `nemorouter serve` worker (SQLite), each from a fresh start.
bench/streams_client.py holds the streams (a process of its own) and measures, in the plateau where
every stream is open:
  added p99 delay between events  the gateway's p99 gap between a stream's events minus the floor's
  resident memory per open stream (server RSS at the plateau's peak - RSS before) / streams
  CPU per relayed event           server CPU time in the plateau (/proc) / events relayed in it
Then, the gateway stopped, its store must show every stream charged exactly: one generation per
stream on the key they used, each stream read to its end a success with the stub's usage and that
usage's exact cost (within its hold), no credit left held, and the account's usage equal to its
generations' costs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from nemorouter_setup import add_key, charges, exact_cost_pico, setup_nemorouter
from servers import HTTP, Server, free_port, log

BENCH_DIR = Path(__file__).resolve().parent
INTERVAL = 0.1  # seconds between a stream's events (the stub's --stream-interval)
PROMPT_TOKENS = 12  # what paced_stub.py reports
TARGET_ADDED_P99_MS = 5.0
TARGET_RSS_PER_STREAM = 64 * 1024


def check_stream(url: str, key: str, model: str) -> None:
    """One short stream read in full before the client opens thousands (a 2xx alone proves little)."""
    body = json.dumps(
        {"model": model, "stream": True, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers=headers, method="POST")
    try:
        with HTTP.open(req, timeout=30) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    if status != 200 or b'" tok"' not in payload or not payload.rstrip().endswith(b"data: [DONE]"):
        raise RuntimeError(f"check stream got HTTP {status}: {payload[:500]!r}")


def hold_streams(server: Server, key: str, model: str, opts: argparse.Namespace) -> dict[str, Any]:
    """Run bench/streams_client.py against `server`; its JSON report."""
    assert server.proc is not None
    argv = [sys.executable, str(BENCH_DIR / "streams_client.py"), "--url", server.url, "--key", key]
    argv += ["--model", model, "--streams", str(opts.streams), "--tokens", str(tokens(opts))]
    argv += ["--ramp", str(opts.stream_ramp), "--server-pid", str(server.proc.pid)]
    log(
        f"{server.name}: {opts.streams} streams of {opts.stream_seconds:g} s, opened over {opts.stream_ramp:.1f} s"
    )
    timeout = opts.stream_seconds + opts.stream_ramp + 180
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"streams client exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def tokens(opts: argparse.Namespace) -> int:
    return max(1, round(opts.stream_seconds / INTERVAL))


def figures(client: dict[str, Any]) -> dict[str, Any]:
    """The per-row figures from a client report; invalid when a stream failed or no window had
    every stream requested and none finished (the ramp is longer than a stream)."""
    plateau = client.get("plateau")
    if client["failures"] or plateau is None or not plateau["events"]:
        reason = (
            f"{client['failures']} of {client['streams']} streams failed: {client['failure_examples']}"
            if client["failures"]
            else f"no plateau: the first stream ended (after {client['first_done_after_s']} s) before the"
            " last one was requested: make --stream-ramp shorter than --stream-seconds"
        )
        return {"valid": False, "error": reason, "client": client}
    all_open = plateau["kind"] == "open"
    return {
        "valid": True,
        "all_open_at_once": all_open,
        "peak_open": client["peak_open"],
        "note": ""
        if all_open
        else f"never all {client['streams']} open at once (peak {client['peak_open']}; the last answered"
        f" after {client['all_open_after_s']} s, first events up to {client['first_event_max_ms'] / 1000:.1f} s"
        " late): plateau = last request to first end",
        "gap_p50_ms": client["gaps"]["plateau_p50_ms"],
        "gap_p99_ms": client["gaps"]["plateau_p99_ms"],
        "rss_per_stream_bytes": round(
            (plateau["peak_rss_bytes"] - client["rss_before_bytes"]) / client["streams"]
        ),
        "cpu_us_per_event": round(1e6 * plateau["server_cpu_seconds"] / plateau["events"], 2),
        "client_cpu_us_per_event": round(1e6 * client["client_cpu_seconds"] / max(1, client["events"]), 2),
        "plateau_seconds": round(plateau["seconds"], 2),
        "plateau_events": plateau["events"],
        "client": client,
    }


def charged_exactly(found: dict[str, Any], streams: int, completion: int, failed: int) -> list[str]:
    """Every way the store's record departs from exact charging (empty: none): one generation per
    stream; each stream the client read to the end charged its usage's exact cost, within its
    hold; the `failed` ones (the client's count) are the others; nothing left held."""
    problems = []
    generations = found["generations"]
    if len(generations) != streams:
        problems.append(f"{len(generations)} generations for {streams} streams")
    cost = exact_cost_pico(PROMPT_TOKENS, completion)
    succeeded = [g for g in generations if g["status"] == "success"]
    if len(succeeded) != streams - failed:
        problems.append(f"{len(succeeded)} successes for {streams - failed} streams read to the end")
    wrong = [
        g
        for g in succeeded
        if not g["streamed"]
        or (g["prompt_tokens"], g["completion_tokens"]) != (PROMPT_TOKENS, completion)
        or g["cost"] != cost
        or g["cost"] > g["hold"]
    ]
    if wrong:
        problems.append(f"{len(wrong)} not charged {cost} pico-USD exactly, e.g. {wrong[0]}")
    # A failed stream's exact charge depends on how far it got (nothing for a refusal, the tokens
    # delivered for a cut): here only that it stays within its hold; the run is invalid anyway.
    over = [g for g in generations if g["status"] != "success" and g["cost"] > g["hold"]]
    if over:
        problems.append(f"{len(over)} failed streams charged above their hold, e.g. {over[0]}")
    if found["account_held"] != 0:
        problems.append(f"{found['account_held']} pico-USD still held")
    if found["account_total_usage"] != found["account_generations_cost"]:
        problems.append(
            f"account usage {found['account_total_usage']} != its generations' costs {found['account_generations_cost']}"
        )
    return problems


def run_streams(opts: argparse.Namespace) -> dict[str, Any]:
    """The scenario, start to finish; every server it starts is stopped before it returns."""
    py = sys.executable
    rows: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"streams": opts.streams, "stream_seconds": opts.stream_seconds, "rows": rows}
    out.update(interval_ms=INTERVAL * 1000, ramp_seconds=opts.stream_ramp, tokens=tokens(opts))
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nemobench-streams-")))
        port = free_port()
        argv = [py, str(BENCH_DIR / "paced_stub.py"), "--port", str(port), "--interval", str(INTERVAL)]
        try:
            stub = stack.enter_context(Server("streams-stub", argv, port, tmp))
        except Exception as exc:
            out["error"] = f"not measured: stub failed: {exc}"
            return out
        try:
            port = free_port()
            argv = [py, str(BENCH_DIR / "floor_proxy.py"), "--port", str(port), "--upstream", stub.url]
            with Server("streams-floor", argv, port, tmp) as floor:
                check_stream(floor.url, "sk-bench-any-key", "gpt-4o-mini")
                rows["floor"] = figures(hold_streams(floor, "sk-bench-any-key", "gpt-4o-mini", opts))
        except Exception as exc:
            log(f"streams-floor: FAILED: {exc}")
            rows["floor"] = {"valid": False, "error": f"not measured: {exc}"}
        try:
            port, data_dir = free_port(), tmp / "nemo-data"
            data_dir.mkdir()
            nemo = setup_nemorouter(data_dir, stub.url + "/v1", port)
            key, key_id = add_key(nemo, "streams")  # the streams' generations alone are on this key
            with Server("streams-nemorouter", nemo.serve_argv, port, tmp, nemo.env) as srv:
                check_stream(srv.url, nemo.api_key, nemo.model)
                client = hold_streams(srv, key, nemo.model, opts)
                rows["nemorouter"] = figures(client)
            found = charges(nemo, key_id, opts.streams + 100)
            problems = charged_exactly(found, opts.streams, tokens(opts), client["failures"])
            out["charged_exactly"] = not problems
            out["charge_problems"] = problems
        except Exception as exc:
            log(f"streams-nemorouter: FAILED: {exc}")
            rows.setdefault("nemorouter", {"valid": False, "error": f"not measured: {exc}"})
            out.setdefault("charged_exactly", None)
            out.setdefault("charge_problems", [f"not checked: {exc}"])
    out["comparison"] = compare(rows["floor"], rows["nemorouter"], out.get("charged_exactly"))
    return out


def compare(floor: dict[str, Any], nemo: dict[str, Any], charged: bool | None) -> dict[str, Any]:
    both = (
        floor["valid"]
        and nemo["valid"]
        and floor["gap_p99_ms"] is not None
        and nemo["gap_p99_ms"] is not None
    )
    added = round(nemo["gap_p99_ms"] - floor["gap_p99_ms"], 3) if both else None
    rss = nemo["rss_per_stream_bytes"] if nemo["valid"] else None
    return {
        "all_open_at_once": nemo["all_open_at_once"] if nemo["valid"] else None,
        "added_p99_gap_ms": added,
        "added_p99_pass": None if added is None else added <= TARGET_ADDED_P99_MS,
        "rss_per_stream_bytes": rss,
        "rss_pass": None if rss is None else rss <= TARGET_RSS_PER_STREAM,
        "cpu_per_event_ratio": round(nemo["cpu_us_per_event"] / floor["cpu_us_per_event"], 2)
        if both
        else None,
        "charged_exactly": charged,
    }


def report_streams(result: dict[str, Any]) -> None:
    print(
        f"\nThousands of streams: {result['streams']} concurrent streams of {result['stream_seconds']:g} s"
        f" (an event every {result['interval_ms']:g} ms, {result['tokens']} tokens), one server process,"
        f" opened over {result['ramp_seconds']:.1f} s; figures from the plateau, every stream open (else see the notes)"
    )
    if "error" in result:
        print(f"  {result['error']}")
        return
    print(
        f"\n{'server':<12}{'gap p50 ms':>12}{'gap p99 ms':>12}{'KiB/stream':>12}{'CPU us/event':>14}"
        f"{'plateau s':>11}  note"
    )
    for name, row in result["rows"].items():
        if not row["valid"]:
            print(f"{name:<12}{'-':>12}{'-':>12}{'-':>12}{'-':>14}{'-':>11}  INVALID (below)")
            continue
        note = f"client {row['client_cpu_us_per_event']:.1f} us/event; peak open {row['peak_open']}"
        print(
            f"{name:<12}{row['gap_p50_ms']:>12.2f}{row['gap_p99_ms']:>12.2f}"
            f"{row['rss_per_stream_bytes'] / 1024:>12.1f}{row['cpu_us_per_event']:>14.1f}"
            f"{row['plateau_seconds']:>11.1f}  {note}"
        )
    for name, row in result["rows"].items():
        if not row["valid"] or row["note"]:
            print(f"  {name}: {row['error'] if not row['valid'] else row['note']}")
    cmp = result["comparison"]
    verdict = {True: "PASS", False: "FAIL", None: "n/a"}

    def line(label: str, value: str, target: str, passed: bool | str | None) -> None:
        print(
            f"  {label:<20}{value:>12}   {target:<30}{passed if isinstance(passed, str) else verdict[passed]}"
        )

    def num(value: float | None, spec: str, unit: str) -> str:
        return "-" if value is None else f"{value:{spec}} {unit}"

    print("\nNemoRouter streams vs floor:")
    peak = result["rows"]["nemorouter"].get("peak_open")
    line(
        "all open at once",
        f"peak {peak}" if peak is not None else "-",
        f"{result['streams']}",
        cmp["all_open_at_once"],
    )
    line(
        "added p99 gap",
        num(cmp["added_p99_gap_ms"], "+.2f", "ms"),
        f"<= +{TARGET_ADDED_P99_MS:.0f} ms",
        cmp["added_p99_pass"],
    )
    rss = cmp["rss_per_stream_bytes"]
    line(
        "memory per stream",
        num(None if rss is None else rss / 1024, ".1f", "KiB"),
        f"<= {TARGET_RSS_PER_STREAM // 1024} KiB",
        cmp["rss_pass"],
    )
    line("CPU per event", num(cmp["cpu_per_event_ratio"], ".2f", "x"), "the floor's (reported)", "")
    line("charged exactly", "", "every stream, its exact cost", cmp["charged_exactly"])
    for problem in result.get("charge_problems", []):
        print(f"    {problem}")
