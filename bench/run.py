"""NemoRouter benchmark: the gateway against a featureless floor proxy and the bare upstream, in one run.

Three configurations serve the same non-streaming POST /v1/chat/completions:
  direct      wrk -> stub                      (what the machine can do at all)
  floor       wrk -> floor_proxy -> stub       (the cheapest Python pass-through; the baseline)
  nemorouter  wrk -> nemorouter -> stub        (the real gateway, every feature on)
  nemo-pg     wrk -> nemorouter -> stub        (the same on PostgreSQL + Redis, `serve --workers 2`)
Each is loaded with wrk at 64 connections for throughput and at 1 connection for latency. NemoRouter
is judged against the floor: p50 within 1.0 ms of it, req/s at least 50% of it. Results are printed
and written to bench/results/latest.json. Exit code 1 if a configuration could not be measured or
answered anything but 2xx; a missed target alone still exits 0 (this is a report, not a gate).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from nemorouter_setup import setup_nemorouter, setup_shared

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "latest.json"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
CONNECTIONS = 64
TARGET_P50_DIFF_MS = 1.0
TARGET_RPS_RATIO = 0.5
DIRECT_MODEL, NEMO_MODEL = "gpt-4o-mini", "bench/gpt-4o-mini"
STUB_KEY = "sk-bench-any-key"
SHARED_WORKERS = 2
POSTGRES_URL = os.environ.get("NEMO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NEMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Loopback only: never let an http_proxy variable reroute the harness's own checks.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A child server in its own process group, ready (GET /healthz -> 200) on enter, killed on exit."""

    def __init__(
        self, name: str, argv: list[str], port: int, logdir: Path, env: dict[str, str] | None = None
    ):
        self.name, self.argv, self.port, self.env = name, argv, port, env
        self.url = f"http://127.0.0.1:{port}"
        self.logfile = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        log(f"starting {self.name} on :{self.port}")
        with self.logfile.open("wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout=60.0)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), HTTP.open(self.url + "/healthz", timeout=1.0) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the whole group (a server may have its own children), SIGKILL if it lingers."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None


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


def lua_script(body: bytes, key: str) -> str:
    def lua_str(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "\n".join(
        [
            'wrk.method = "POST"',
            f"wrk.body = {lua_str(body.decode())}",
            'wrk.headers["Content-Type"] = "application/json"',
            f'wrk.headers["Authorization"] = {lua_str("Bearer " + key)}',
            "",
        ]
    )


SOCKET_ERRORS = ("connect", "read", "write", "timeout")
_MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not m:
        raise ValueError(f"unparsable wrk time {value!r}")
    return round(float(m[1]) * _MS_PER_UNIT[m[2]], 4)


@dataclass
class WrkRun:
    requests: int
    rps: float
    non_2xx: int
    socket_errors: dict[str, int]
    percentiles_ms: dict[str, float]


def parse_wrk(out: str) -> WrkRun:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s*(\d+) requests in ", out, re.M)
    if not rps or not total:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = dict(zip(SOCKET_ERRORS, map(int, sock.groups()) if sock else (0, 0, 0, 0), strict=True))
    pct = {f"p{p}": to_ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M)}
    return WrkRun(int(total[1]), float(rps[1]), int(non_2xx[1]) if non_2xx else 0, errors, pct)


def wrk(url: str, script: Path, connections: int, seconds: int, latency: bool = False) -> WrkRun:
    argv = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
    argv += [*(["--latency"] if latency else []), url + "/v1/chat/completions"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout)


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


def run_all(opts: argparse.Namespace) -> list[Result]:
    """Start all three servers, then measure floor and NemoRouter in alternating rounds, so drift on
    this shared machine hits both alike; each row is the median of its rounds."""
    py = sys.executable
    with contextlib.ExitStack() as stack:  # unwinds on error, Ctrl-C and SIGTERM alike
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nemobench-")))
        stub_port = free_port()
        names = ("direct", "floor", "nemorouter", "nemo-pg")
        try:
            stub = stack.enter_context(
                Server("stub", [py, str(BENCH_DIR / "stub.py"), "--port", str(stub_port)], stub_port, tmp)
            )
        except Exception as exc:
            log(f"stub: FAILED: {exc}")
            return [Result(n, error=f"not measured: stub failed: {exc}") for n in names]

        def floor_proxy(name: str) -> Server:
            port = free_port()
            argv = [py, str(BENCH_DIR / "floor_proxy.py"), "--port", str(port), "--upstream", stub.url]
            return Server(name, argv, port, tmp)

        targets: dict[str, tuple[str, str, str]] = {"direct": (stub.url, STUB_KEY, DIRECT_MODEL)}
        failed: dict[str, str] = {}
        try:
            floor_srv = stack.enter_context(floor_proxy("floor"))
            targets["floor"] = (floor_srv.url, STUB_KEY, DIRECT_MODEL)
        except Exception as exc:
            failed["floor"] = f"not measured: {exc}"
        try:
            if opts.fake_nemorouter:  # debug: exercise this code path with a second floor proxy
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

        rounds: dict[str, list[Result]] = {n: [] for n in names}
        compared = names[1:]
        for index in range(opts.rounds):
            # Each round starts one row later, so no row always runs right after another one.
            shift = index % len(compared)
            order = (names[:1] if index == 0 else ()) + compared[shift:] + compared[:shift]
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
        return [Result(n, error=failed[n]) if n in failed else combine(n, rounds[n]) for n in names]


def compare(floor: Result, nemo: Result) -> dict[str, Any]:
    """NemoRouter against the floor; verdicts only when both rows are valid."""
    if not (floor.valid and nemo.valid) or not floor.rps or floor.p50_ms is None or nemo.p50_ms is None:
        return {
            "valid": False,
            "rps_ratio_pct": None,
            "p50_diff_ms": None,
            "rps_pass": None,
            "p50_pass": None,
        }
    ratio = 100.0 * (nemo.rps or 0.0) / floor.rps
    diff = nemo.p50_ms - floor.p50_ms
    return {
        "valid": True,
        "rps_ratio_pct": round(ratio, 1),
        "p50_diff_ms": round(diff, 3),
        "rps_pass": ratio >= 100.0 * TARGET_RPS_RATIO,
        "p50_pass": diff <= TARGET_P50_DIFF_MS,
    }


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(
    results: list[Result], cmp: dict[str, Any], opts: argparse.Namespace, shared: dict[str, Any] | None = None
) -> None:
    print(
        f"\nNemoRouter benchmark: wrk -t1, throughput {opts.seconds}s @{CONNECTIONS} conns, "
        f"latency {opts.latency_seconds}s @1 conn, {os.cpu_count()} CPUs; "
        f"medians of {opts.rounds} alternating round(s)"
        + ("  [--fake-nemorouter: row 3 is a second floor proxy]" if opts.fake_nemorouter else "")
    )
    print(f"\n{'config':<12}{f'req/s @{CONNECTIONS}':>12}{'p50 ms @1':>12}{'p99 ms @1':>12}  note")
    for r in results:
        note = r.error.splitlines()[0] if r.error else ""
        note = note if len(note) <= 90 else note[:87] + "..."
        if r.valid and any(r.socket_errors.values()):
            note = "socket errors: " + ", ".join(f"{k} {v}" for k, v in r.socket_errors.items() if v)
        if not note and len(r.rounds_rps) > 1:
            note = "rounds req/s: " + ", ".join(fmt(v, 0) for v in r.rounds_rps)
        print(f"{r.name:<12}{fmt(r.rps, 0):>12}{fmt(r.p50_ms, 3):>12}{fmt(r.p99_ms, 3):>12}  {note}".rstrip())
    print_comparison("NemoRouter vs floor:", cmp)
    if shared is not None:
        print_comparison(f"NemoRouter on PostgreSQL + Redis ({SHARED_WORKERS} workers) vs floor:", shared)


def print_comparison(title: str, cmp: dict[str, Any]) -> None:
    print(f"\n{title}")
    if not cmp["valid"]:
        print("  n/a: floor or this row has no valid measurement (see above)")
        return
    verdict = {True: "PASS", False: "FAIL"}
    print(
        f"  req/s  {cmp['rps_ratio_pct']:>7.1f} % of floor   target >= {100 * TARGET_RPS_RATIO:.0f} %"
        f"     {verdict[cmp['rps_pass']]}"
    )
    print(
        f"  p50    {cmp['p50_diff_ms']:>+7.3f} ms vs floor  target <= +{TARGET_P50_DIFF_MS:.1f} ms"
        f"  {verdict[cmp['p50_pass']]}"
    )


def wrk_version() -> str:
    proc = subprocess.run([WRK, "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).splitlines()[0].strip() if (proc.stdout or proc.stderr) else "?"


def write_json(
    results: list[Result], cmp: dict[str, Any], opts: argparse.Namespace, shared: dict[str, Any] | None = None
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
        },
        "targets": {"p50_max_diff_ms": TARGET_P50_DIFF_MS, "rps_min_ratio_pct": 100 * TARGET_RPS_RATIO},
        "results": {r.name: {**asdict(r), "valid": r.valid} for r in results},
        "nemorouter_vs_floor": cmp,
        "nemo_pg_vs_floor": shared,
        "nemo_pg_workers": SHARED_WORKERS,
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
        "--quick", action="store_true", help="smoke run: 2 s throughput, 2 s latency, 1 s warm-up"
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
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.seconds, opts.latency_seconds, opts.warmup, opts.rounds = 2, 2, 1, 1
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if not Path(WRK).exists():
        log(f"wrk not found ({WRK}); install it with: apt-get install wrk")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the ExitStack still stops the servers
    try:
        results = run_all(opts)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    cmp = compare(results[1], results[2])
    shared = None if opts.skip_pg else compare(results[1], results[3])
    report(results, cmp, opts, shared)
    write_json(results, cmp, opts, shared)
    bad = [r for r in results if not r.valid and not (opts.skip_pg and r.name == "nemo-pg")]
    for r in bad:
        log(f"!!! {r.name.upper()} {r.error}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
