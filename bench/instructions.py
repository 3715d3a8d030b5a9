"""CPU instructions per request, counted by callgrind: the floor proxy and the gateway, same requests.

Wall-clock req/s on this shared 2-core machine moves by several per cent with whatever else runs;
callgrind counts the instructions a server executes, which repeat to ~0.1 % whatever the load. So
this is the tool for deciding whether a change to the request path pays (docs/architecture.md
"Speed" quotes its figures); `make bench` remains the judge of req/s and latency.

Each server runs under `valgrind --tool=callgrind --instr-atstart=no`; after a warm-up, counting is
switched on for `--requests` keep-alive requests (one at a time, or over `--connections` concurrent
connections, as wrk's req/s run sends them), then off, and the total is divided.

    .venv/bin/python bench/instructions.py [--requests 300] [--keep DIR]

With `--keep DIR` the callgrind output files stay in DIR for `callgrind_annotate`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nemorouter_setup import setup_nemorouter, setup_shared
from servers import Server, free_port, log

BENCH_DIR = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get("NEMO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NEMO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence."},
]
# With --stream-events N, each request is a stream of N token events from paced_stub.py, one every
# --stream-interval seconds.
STREAM_EVENTS = 0


def _post(conn: http.client.HTTPConnection, key: str, model: str) -> None:
    fields: dict[str, object] = {"model": model, "messages": MESSAGES, "max_tokens": 16}
    if STREAM_EVENTS:
        fields.update(stream=True, max_tokens=STREAM_EVENTS)
    body = json.dumps(fields).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")


def _load(port: int, key: str, model: str, requests: int, connections: int) -> None:
    """`requests` requests over `connections` keep-alive connections, each one at a time."""

    def one_connection(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for _ in range(count):
            _post(conn, key, model)
        conn.close()

    shares = [requests // connections + (i < requests % connections) for i in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(one_connection, shares))


def _count(
    server: Server, out: Path, key: str, model: str, warmup: int, requests: int, connections: int
) -> int:
    assert server.proc is not None
    pid = str(server.proc.pid)
    _load(server.port, key, model, warmup, connections)
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    _load(server.port, key, model, requests, connections)
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    # The dump is written by the server's next scheduling; wait for a file with a total.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        total = sum(_dump_total(dump) for dump in out.parent.glob(out.name + "*"))
        if total:
            return total
        time.sleep(0.5)
    raise RuntimeError(f"callgrind wrote no dump for {server.name}")


def _dump_total(dump: Path) -> int:
    """The instructions in one dump file (its `totals:` line; `summary:` may say 0)."""
    found = re.findall(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.MULTILINE)
    return max(map(int, found), default=0)


def _valgrind(out: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        "-q",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--connections", type=int, default=1, help="concurrent connections (64: like wrk's req/s run)"
    )
    parser.add_argument(
        "--stream-events", type=int, default=0, help="streams of this many token events (paced_stub.py)"
    )
    parser.add_argument(
        "--stream-interval",
        type=float,
        default=0.001,
        help="seconds between a stream's events (0.001: under callgrind a server is behind, and "
        "events arrive several at a time; 0.05: one at a time, as in the streams scenario)",
    )
    parser.add_argument("--keep", type=Path, help="keep callgrind's files in this directory")
    parser.add_argument(
        "--only",
        choices=("floor", "nemorouter", "nemo-pg"),
        help="measure one server (nemo-pg: the gateway on PostgreSQL + Redis, one worker, as run.py's"
        " nemo-pg row provisions it; not in the default pair)",
    )
    opts = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    py = sys.executable
    results: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nemoinstr-")))
        keep = opts.keep or tmp
        keep.mkdir(parents=True, exist_ok=True)
        stub_port = free_port()
        global STREAM_EVENTS
        STREAM_EVENTS = opts.stream_events
        stub_argv = [py, str(BENCH_DIR / "stub.py"), "--port", str(stub_port)]
        if STREAM_EVENTS:
            stub_argv = [
                py,
                str(BENCH_DIR / "paced_stub.py"),
                "--port",
                str(stub_port),
                "--interval",
                str(opts.stream_interval),
            ]
        stub = stack.enter_context(Server("stub", stub_argv, stub_port, tmp))
        rows = ("floor", "nemorouter") if opts.only is None else (opts.only,)
        for name in rows:
            out = keep / f"callgrind.{name}.out"
            port = free_port()
            if name == "floor":
                argv_ = [py, str(BENCH_DIR / "floor_proxy.py"), "--port", str(port), "--upstream", stub.url]
                server = Server(name, _valgrind(out) + argv_, port, tmp)
                key, model = "sk-bench-any-key", "gpt-4o-mini"
            elif name == "nemo-pg":
                data_dir = tmp / "nemo-pg-data"
                data_dir.mkdir()
                nemo = setup_shared(data_dir, stub.url + "/v1", port, POSTGRES_URL, REDIS_URL, 1)
                stack.callback(nemo.cleanup)  # after the server stops
                server = Server(name, _valgrind(out) + nemo.serve_argv, port, tmp, nemo.env)
                key, model = nemo.api_key, nemo.model
            else:
                data_dir = tmp / "nemo-data"
                data_dir.mkdir()
                nemo = setup_nemorouter(data_dir, stub.url + "/v1", port)
                server = Server(name, _valgrind(out) + nemo.serve_argv, port, tmp, nemo.env)
                key, model = nemo.api_key, nemo.model
            log(f"{name}: starting under callgrind (slow)")
            with server:
                results[name] = _count(server, out, key, model, opts.warmup, opts.requests, opts.connections)
            log(f"{name}: {results[name] / opts.requests / 1000:,.0f}k instructions per request")
    for name, total in results.items():
        print(f"{name:<12} {total / opts.requests / 1000:>10,.0f}k instructions/request")
    if STREAM_EVENTS:
        for name, total in results.items():
            print(f"{name:<12} {total / opts.requests / STREAM_EVENTS / 1000:>10,.1f}k instructions/event")
    if set(results) == {"floor", "nemorouter"}:
        print(f"ratio        {results['nemorouter'] / results['floor']:>10.2f}x the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
