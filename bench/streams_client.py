"""Hold thousands of streaming chat requests open at once and time every event (bench/streams.py).

Raw asyncio protocols on uvloop and no HTTP library: a stream costs this process a socket, a small
buffer and a callback per read (about 5 µs of CPU per event), so it can hold the 2,000 streams the
scenario asks for on the cores it shares with the proxy under test. The streams start evenly over `--ramp`
seconds (so the upstream's fixed schedules fall at different instants). The *plateau* is the
window in which every stream is open: from the moment the last one got its first event to the
moment the first one finished (sample_plateau says what stands in when there is no such moment).
In it this process samples the server's resident memory and CPU time from /proc, and counts the
events relayed; the gaps between consecutive events of a stream are kept for the whole run. One
JSON document on stdout.

    python bench/streams_client.py --url http://127.0.0.1:4000 --key sk-... --model m \
        --streams 2000 --tokens 300 --ramp 5 --server-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import uvloop

MARK = b"data: "
DONE = b"data: [DONE]"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit(needed: int) -> None:
    """Each stream is a socket here (and two in the proxy): lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"need {needed} file descriptors, the hard limit is {hard} (ulimit -Hn)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (fields 14 and 15 of /proc/PID/stat, after the command in parentheses)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Run:
    streams: int
    server_pid: int
    started: float = field(default_factory=time.monotonic)
    requested: int = 0  # streams whose request was sent (or could not be)
    opened: int = 0  # streams that got their first event
    open_now: int = 0  # got their first event, not finished
    peak_open: int = 0
    first_event_s: array[float] = field(default_factory=lambda: array("d"))  # request to first event
    finished: int = 0
    events: int = 0  # every `data:` event received, all streams
    gaps_ms: array[float] = field(default_factory=lambda: array("d"))
    gap_ends: array[float] = field(default_factory=lambda: array("d"))  # when each gap closed
    failures: list[str] = field(default_factory=list)
    all_open_at: float | None = None
    first_done_at: float | None = None
    all_requested: asyncio.Event = field(default_factory=asyncio.Event)
    all_open: asyncio.Event = field(default_factory=asyncio.Event)
    first_done: asyncio.Event = field(default_factory=asyncio.Event)


def request_bytes(url: str, key: str, model: str, tokens: int) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    body = json.dumps(
        {
            "model": model,
            "stream": True,
            "max_tokens": tokens,
            "messages": [{"role": "user", "content": "Count slowly."}],
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return parts.hostname or "127.0.0.1", parts.port or 80, head.encode() + body


def _requested(run: Run) -> None:
    run.requested += 1
    if run.requested == run.streams:
        run.all_requested.set()


class StreamReading(asyncio.Protocol):
    """Counts and times one stream's `data:` events as the bytes arrive: a callback per read, no
    coroutine, no HTTP parsing beyond the status line (chunk-size lines never contain `data: `)."""

    def __init__(self, run: Run, expect: int, sent: float) -> None:
        self.run, self.expect, self.sent = run, expect, sent
        self.transport: asyncio.BaseTransport | None = None
        self.head: bytes | None = b""  # None once the response's headers are read
        self.seen, self.last, self.tail, self.opened = 0, 0.0, b"", False
        self.outcome: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(RuntimeError(f"closed after {self.seen} events without [DONE]"))

    def finish(self, error: Exception | None) -> None:
        if not self.outcome.done():
            self.outcome.set_result(error)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()  # not loop.time(): uvloop's is libuv's cached millisecond clock
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 200"):
                self.finish(RuntimeError(self.head.split(b"\r\n", 1)[0].decode(errors="replace")))
                return
            data, self.head = self.head[end + 4 :], None
        run, window = self.run, self.tail + data  # a `data: ` split over two reads is counted once
        count = window.count(MARK)
        self.tail = window[-(len(MARK) - 1) :]
        for _ in range(count):
            if self.seen:  # gaps between the role event and the token events only: the finish,
                if self.seen <= self.expect:  # the usage and [DONE] follow the last token at once
                    run.gaps_ms.append((now - self.last) * 1000.0)
                    run.gap_ends.append(now)
            else:
                self.opened = True
                run.first_event_s.append(now - self.sent)
                run.opened += 1
                run.open_now += 1
                run.peak_open = max(run.peak_open, run.open_now)
                if run.opened == run.streams:
                    run.all_open_at = now
                    if not run.first_done.is_set():
                        run.all_open.set()
            self.seen += 1
            self.last = now
        run.events += count
        if DONE in window:
            short = self.seen < self.expect + 2
            self.finish(
                RuntimeError(f"{self.seen} events, expected at least {self.expect + 2}") if short else None
            )


async def one_stream(run: Run, host: str, port: int, request: bytes, delay: float, expect: int) -> None:
    """Open one stream after `delay` s and read it to [DONE], timing each `data:` event it carries."""
    await asyncio.sleep(delay)
    sent = time.monotonic()
    loop = asyncio.get_running_loop()
    reading: StreamReading | None = None
    try:
        transport, reading = await loop.create_connection(
            lambda: StreamReading(run, expect, sent), host, port
        )
        transport.write(request)
        _requested(run)
        error = await reading.outcome
    except OSError as exc:
        _requested(run)
        error = exc
    if error is not None:
        run.failures.append(f"{type(error).__name__}: {error}")
    if reading is not None and reading.opened:
        run.open_now -= 1
    run.finished += 1
    if not run.first_done.is_set():
        run.first_done_at = time.monotonic()
    run.first_done.set()


def snapshot(run: Run) -> dict[str, float]:
    return {"at": time.monotonic(), "cpu": cpu_seconds(run.server_pid), "events": run.events}


async def sample_plateau(run: Run, interval: float) -> dict[str, Any] | None:
    """CPU, events and peak RSS of the server in the plateau: from the moment every stream is open
    (got its first event) to the first one's end. If no such moment comes (the server answers the
    last streams after the first ones end), the window from the last request to the first end, and
    kind "requested" says so. None: the first stream ended before the last was requested."""
    first_done = asyncio.ensure_future(run.first_done.wait())
    all_requested = asyncio.ensure_future(run.all_requested.wait())
    await asyncio.wait([all_requested, first_done], return_when=asyncio.FIRST_COMPLETED)
    if not run.all_requested.is_set():
        all_requested.cancel()
        return None
    kind, start, peak, open_at_start = "requested", snapshot(run), rss_bytes(run.server_pid), run.open_now
    while not run.first_done.is_set():
        if kind == "requested" and run.all_open.is_set():
            kind, start, peak, open_at_start = "open", snapshot(run), rss_bytes(run.server_pid), run.open_now
        await asyncio.wait([first_done], timeout=interval)
        peak = max(peak, rss_bytes(run.server_pid))
    end = snapshot(run)
    return {
        "kind": kind,
        "open_at_start": open_at_start,
        "start": start["at"],
        "end": end["at"],
        "seconds": end["at"] - start["at"],
        "server_cpu_seconds": end["cpu"] - start["cpu"],
        "events": end["events"] - start["events"],
        "peak_rss_bytes": peak,
    }


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


async def main_async(opts: argparse.Namespace) -> dict[str, object]:
    run = Run(opts.streams, opts.server_pid)
    host, port, request = request_bytes(opts.url, opts.key, opts.model, opts.tokens)
    rss_before, cpu_before = rss_bytes(opts.server_pid), cpu_seconds(opts.server_pid)
    own_before = time.process_time()
    sampler = asyncio.ensure_future(sample_plateau(run, 0.25))
    step = opts.ramp / opts.streams
    await asyncio.gather(
        *(one_stream(run, host, port, request, i * step, opts.tokens) for i in range(opts.streams))
    )
    plateau = await sampler
    in_plateau = [
        gap
        for gap, end in zip(run.gaps_ms, run.gap_ends, strict=True)
        if plateau is not None and plateau["start"] <= end <= plateau["end"]
    ]
    gaps = list(run.gaps_ms)
    waits = list(run.first_event_s)
    return {
        # when (s from the first request) the last stream got its first event, and the first one ended
        "all_open_after_s": None if run.all_open_at is None else round(run.all_open_at - run.started, 3),
        "first_done_after_s": None
        if run.first_done_at is None
        else round(run.first_done_at - run.started, 3),
        "first_event_p50_ms": round(1000 * statistics.median(waits), 3) if waits else None,
        "first_event_max_ms": round(1000 * max(waits), 3) if waits else None,
        "peak_open": run.peak_open,  # streams answered and not finished, at most, at once
        "streams": opts.streams,
        "tokens": opts.tokens,
        "failures": len(run.failures),
        "failure_examples": sorted(set(run.failures))[:5],
        "events": run.events,
        "rss_before_bytes": rss_before,
        "server_cpu_seconds_total": cpu_seconds(opts.server_pid) - cpu_before,
        "client_cpu_seconds": time.process_time() - own_before,
        "plateau": plateau,
        "gaps": {
            "count": len(gaps),
            "plateau_count": len(in_plateau),
            **{
                f"{name}_ms": round(percentile(values, q), 3) if len(values) > 1 else None
                for values, prefix in ((gaps, "all"), (in_plateau, "plateau"))
                for q, name in ((50, f"{prefix}_p50"), (99, f"{prefix}_p99"), (99.9, f"{prefix}_p999"))
            },
            "all_mean_ms": round(statistics.fmean(gaps), 3) if gaps else None,
            "all_max_ms": round(max(gaps), 3) if gaps else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=300, help="content events per stream")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the streams start")
    parser.add_argument("--server-pid", type=int, required=True, help="the process to sample in /proc")
    opts = parser.parse_args()
    raise_fd_limit(opts.streams + 64)
    print(json.dumps(uvloop.run(main_async(opts))), flush=True)


if __name__ == "__main__":
    main()
