"""NemoRouter benchmark: the gateway against a featureless floor proxy and the bare upstream, in one run.

Five configurations serve the same non-streaming POST /v1/chat/completions:
  direct      wrk -> stub                      (what the machine can do at all)
  floor       wrk -> floor_proxy -> stub       (the cheapest Python pass-through; the baseline)
  floor2      wrk -> floor_proxy -> stub       (the same with 2 forked workers: nemo-pg's baseline)
  nemorouter  wrk -> nemorouter -> stub        (the real gateway, every feature on, SQLite, 1 worker)
  nemo-pg     wrk -> nemorouter -> stub        (the same on PostgreSQL + Redis, `serve --workers 2`)
Each is loaded with wrk at 64 connections for throughput and at 1 connection for latency. NemoRouter
is judged against the floor of as many workers (targets: issue 23's acceptance, see TARGETS); the
ratios are printed either way. Then the thousands-of-streams scenario (bench/streams.py) holds
2,000 streams open through the floor and through the gateway. Results are printed and written to
bench/results/latest.json. Exit code 1 if a configuration could not be measured or answered
anything but 2xx; a missed target alone still exits 0 (this is a report, not a gate).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nemorouter_setup import setup_nemorouter, setup_shared
from rows import CONNECTIONS, SHARED_WORKERS, TARGETS, Result, combine, compare, ratios, report
from servers import HTTP, Server, free_port, log
from streams import report_streams, run_streams
from wrk_load import SOCKET_ERRORS, WRK, lua_script, wrk, wrk_version

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "latest.json"
DIRECT_MODEL, NEMO_MODEL = "gpt-4o-mini", "bench/gpt-4o-mini"
STUB_KEY = "sk-bench-any-key"
POSTGRES_URL = os.environ.get("NEMO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NEMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def request_body(model: str) -> bytes:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello in one short sentence."},
    ]
    return json.dumps({"model": model, "messages": messages, "max_tokens": 16}).encode()


def check_one_request(url: str, key: str, body: bytes) -> None:
    """wrk counts only 4xx/5xx as errors and never reads bodies, so verify one answer fully first."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers=headers, method="POST")
    try:
        with HTTP.open(req, timeout=10) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    if (
        status != 200
        or not isinstance(doc, dict)
        or doc.get("object") != "chat.completion"
        or "usage" not in doc
    ):
        raise RuntimeError(f"check request got HTTP {status}: {payload[:500]!r}")


def measure(name: str, url: str, key: str, model: str, opts: argparse.Namespace, tmp: Path) -> Result:
    """Check one request, warm up, then throughput @64 and latency @1; any non-2xx invalidates."""
    body = request_body(model)
    check_one_request(url, key, body)
    script = tmp / f"{name}.lua"
    script.write_text(lua_script(body, key))
    log(f"{name}: warm-up {opts.warmup}s, {opts.seconds}s @{CONNECTIONS}, {opts.latency_seconds}s @1")
    runs = [
        wrk(url, script, CONNECTIONS, opts.warmup),
        tput := wrk(url, script, CONNECTIONS, opts.seconds),
        lat := wrk(url, script, 1, opts.latency_seconds, latency=True),
    ]
    res = Result(name, tput.rps, lat.percentiles_ms.get("p50"), lat.percentiles_ms.get("p99"))
    res.requests = sum(r.requests for r in runs)
    res.non_2xx = sum(r.non_2xx for r in runs)
    res.socket_errors = {k: sum(r.socket_errors.get(k, 0) for r in runs) for k in SOCKET_ERRORS}
    res.latency_ms = lat.percentiles_ms
    if res.non_2xx:
        res.error = f"INVALID: {res.non_2xx} of {res.requests} responses were not 2xx"
    elif res.p50_ms is None or res.p99_ms is None:
        res.error = "INVALID: no latency distribution in wrk output"
    return res


ROWS = ("direct", "floor", "floor2", "nemorouter", "nemo-pg")


def run_all(opts: argparse.Namespace) -> dict[str, Result]:
    """Start every server, then measure the compared rows in alternating rounds, so drift on this
    shared machine hits them all alike; each row is the median of its rounds."""
    py = sys.executable
    with contextlib.ExitStack() as stack:  # unwinds on error, Ctrl-C and SIGTERM alike
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nemobench-")))
        stub_port = free_port()
        try:
            stub = stack.enter_context(
                Server("stub", [py, str(BENCH_DIR / "stub.py"), "--port", str(stub_port)], stub_port, tmp)
            )
        except Exception as exc:
            log(f"stub: FAILED: {exc}")
            return {n: Result(n, error=f"not measured: stub failed: {exc}") for n in ROWS}

        def floor_proxy(name: str, workers: int = 1) -> Server:
            port = free_port()
            argv = [py, str(BENCH_DIR / "floor_proxy.py"), "--port", str(port), "--upstream", stub.url]
            return Server(name, [*argv, "--workers", str(workers)], port, tmp)

        targets: dict[str, tuple[str, str, str]] = {"direct": (stub.url, STUB_KEY, DIRECT_MODEL)}
        failed: dict[str, str] = {}
        for name, workers in (("floor", 1), ("floor2", SHARED_WORKERS)):
            try:
                floor_srv = stack.enter_context(floor_proxy(name, workers))
                targets[name] = (floor_srv.url, STUB_KEY, DIRECT_MODEL)
            except Exception as exc:
                failed[name] = f"not measured: {exc}"
        try:
            if opts.skip_sqlite:
                failed["nemorouter"] = "not measured: --skip-sqlite"
            elif opts.fake_nemorouter:  # debug: exercise this code path with a second floor proxy
                srv = stack.enter_context(floor_proxy("nemorouter"))
                targets["nemorouter"] = (srv.url, "sk-fake-nemorouter", NEMO_MODEL)
            else:
                port, data_dir = free_port(), tmp / "nemo-data"
                data_dir.mkdir()
                log(f"nemorouter: provisioning {data_dir}")
                nemo = setup_nemorouter(data_dir, stub.url + "/v1", port)
                srv = stack.enter_context(Server("nemorouter", nemo.serve_argv, port, tmp, nemo.env))
                targets["nemorouter"] = (srv.url, nemo.api_key, nemo.model)
        except Exception as exc:
            failed["nemorouter"] = f"not measured: {exc}"
        if opts.skip_pg:
            failed["nemo-pg"] = "not measured: --skip-pg"
        else:
            try:
                port, data_dir = free_port(), tmp / "nemo-pg-data"
                data_dir.mkdir()
                log(f"nemo-pg: provisioning a PostgreSQL database at {POSTGRES_URL.rsplit('@', 1)[-1]}")
                shared = setup_shared(
                    data_dir, stub.url + "/v1", port, POSTGRES_URL, REDIS_URL, SHARED_WORKERS
                )
                stack.callback(shared.cleanup)  # after the server stops (the stack unwinds in reverse)
                srv = stack.enter_context(Server("nemo-pg", shared.serve_argv, port, tmp, shared.env))
                targets["nemo-pg"] = (srv.url, shared.api_key, shared.model)
            except Exception as exc:
                failed["nemo-pg"] = f"not measured: {exc}"

        rounds: dict[str, list[Result]] = {n: [] for n in ROWS}
        compared = ROWS[1:]
        for index in range(opts.rounds):
            # Each round starts one row later, so no row always runs right after another one.
            shift = index % len(compared)
            order = (ROWS[:1] if index == 0 else ()) + compared[shift:] + compared[:shift]
            for name in order:
                if name in failed:
                    continue
                url, key, model = targets[name]
                log(f"round {index + 1}/{opts.rounds}")
                try:
                    rounds[name].append(measure(name, url, key, model, opts, tmp))
                except Exception as exc:
                    log(f"{name}: FAILED: {exc}")
                    failed[name] = f"not measured: {exc}"
        return {n: Result(n, error=failed[n]) if n in failed else combine(n, rounds[n]) for n in ROWS}


def write_json(
    results: dict[str, Result],
    comparisons: list[dict[str, Any]],
    opts: argparse.Namespace,
    streams: dict[str, Any] | None,
) -> None:
    doc = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "wrk": wrk_version(),
        },
        "settings": {
            "throughput_seconds": opts.seconds,
            "latency_seconds": opts.latency_seconds,
            "warmup_seconds": opts.warmup,
            "rounds": opts.rounds,
            "connections": CONNECTIONS,
            "wrk_threads": 1,
            "fake_nemorouter": opts.fake_nemorouter,
            "shared_workers": SHARED_WORKERS,
        },
        "results": {r.name: {**asdict(r), "valid": r.valid} for r in results.values()},
        "comparisons": comparisons,
        "rps_ratios_pct": ratios(results) if results else {},
        "streams": streams,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {RESULTS}")


def seconds(text: str) -> int:
    """wrk takes whole seconds only."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of seconds >= 1")
    return value


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=seconds, default=5, help="throughput run length (default 5)")
    parser.add_argument("--latency-seconds", type=seconds, default=3, help="latency run length (default 3)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating floor/NemoRouter rounds; medians reported (default 3)",
    )
    parser.add_argument(
        "--warmup", type=seconds, default=2, help="warm-up before each throughput run (default 2)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s throughput, 2 s latency, 1 s warm-up, one round; 200 streams of 5 s",
    )
    parser.add_argument(
        "--fake-nemorouter",
        action="store_true",
        help="debug: measure a second floor proxy instance as the nemorouter row, to test the harness "
        "without the gateway (the row is then NOT NemoRouter)",
    )
    parser.add_argument(
        "--skip-pg",
        action="store_true",
        help="leave out the PostgreSQL + Redis row (it needs NEMO_BENCH_POSTGRES_URL and NEMO_BENCH_REDIS_URL, "
        "default the local servers)",
    )
    parser.add_argument(
        "--skip-sqlite",
        action="store_true",
        help="leave out the SQLite row (nemorouter), e.g. to measure the PostgreSQL + Redis row more often",
    )
    streams = parser.add_mutually_exclusive_group()
    streams.add_argument(
        "--skip-streams", action="store_true", help="leave out the thousands-of-streams scenario"
    )
    streams.add_argument("--only-streams", action="store_true", help="run the streams scenario alone")
    parser.add_argument("--streams", type=int, help="concurrent streams (default 2000; --quick: 200)")
    parser.add_argument(
        "--stream-seconds", type=positive, help="how long each stream lasts (default 30; --quick: 5)"
    )
    parser.add_argument(
        "--stream-ramp",
        type=positive,
        help="seconds over which the streams start (default a sixth of --stream-seconds, at most 5)",
    )
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.seconds, opts.latency_seconds, opts.warmup, opts.rounds = 2, 2, 1, 1
    opts.streams = opts.streams or (200 if opts.quick else 2000)
    opts.stream_seconds = opts.stream_seconds or (5.0 if opts.quick else 30.0)
    opts.stream_ramp = opts.stream_ramp or min(5.0, opts.stream_seconds / 6)
    if opts.streams < 1:
        parser.error("--streams must be at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if not Path(WRK).exists() and not opts.only_streams:
        log(f"wrk not found ({WRK}); install it with: apt-get install wrk")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the ExitStack still stops the servers
    raise_fd_limit()
    try:
        results = {} if opts.only_streams else run_all(opts)
        streams = None if opts.skip_streams else run_streams(opts)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    comparisons = [compare(results[t.baseline], results[t.row], t) for t in TARGETS] if results else []
    if results:
        report(results, comparisons, opts)
    if streams is not None:
        report_streams(streams)
    write_json(results, comparisons, opts, streams)
    bad = [
        r
        for r in results.values()
        if not r.valid
        and not (opts.skip_pg and r.name == "nemo-pg")
        and not (opts.skip_sqlite and r.name == "nemorouter")
    ]
    for r in bad:
        log(f"!!! {r.name.upper()} {r.error}")
    stream_errors = [] if streams is None else streams_invalid(streams)
    for error in stream_errors:
        log(f"!!! STREAMS {error}")
    return 1 if bad or stream_errors else 0


def streams_invalid(streams: dict[str, Any]) -> list[str]:
    """Why the streams scenario has no valid measurement (a missed target is not one of them)."""
    if "error" in streams:
        return [streams["error"]]
    return [f"{name}: {row['error']}" for name, row in streams["rows"].items() if not row["valid"]]


def raise_fd_limit() -> None:
    """The streams scenario holds thousands of sockets in the servers this process starts (they
    inherit its limits): lift the soft limit on descriptors to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    sys.exit(main())
