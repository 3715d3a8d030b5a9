"""wrk, the load generator of bench/run.py: one run with a request script, its output parsed."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK = shutil.which("wrk") or "/usr/bin/wrk"


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


def wrk_version() -> str:
    proc = subprocess.run([WRK, "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).splitlines()[0].strip() if (proc.stdout or proc.stderr) else "?"
