"""A gateway holds two sockets per open stream, so `serve` lifts its soft open-file limit to the hard
one at start (cli/server.py): a gateway started under a soft limit of 256 runs with the hard limit."""

from __future__ import annotations

import resource
from pathlib import Path

from conftest import new_gateway


def _soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line in /proc/PID/limits")


def test_serve_lifts_a_low_soft_limit_to_the_hard_one(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))  # inherited by the gateway started next
    try:
        gateway = new_gateway(tmp_path, None)
        gateway.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert gateway.proc is not None
        expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
        assert _soft_open_files(gateway.proc.pid) == expected > low
    finally:
        gateway.stop()
