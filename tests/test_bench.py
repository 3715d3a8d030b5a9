"""The benchmark's own parts (bench/): the paced stub and the streams client, the exact-charge
check of the streams scenario, and the multi-worker floor proxy. Real processes over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import free_port

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from nemorouter_setup import exact_cost_pico  # noqa: E402
from streams import PROMPT_TOKENS, charged_exactly  # noqa: E402


def _start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, *args, "--port", str(port)], start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"{args[0]} did not start")


@pytest.fixture
def paced_stub() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, url = _start(str(BENCH / "paced_stub.py"), "--interval", "0.05")
    yield proc, url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def test_the_client_times_every_event_of_every_paced_stream(
    paced_stub: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = paced_stub
    argv = [sys.executable, str(BENCH / "streams_client.py"), "--url", url, "--key", "sk-any"]
    argv += ["--model", "m", "--streams", "20", "--tokens", "10", "--ramp", "0.1"]
    argv += ["--server-pid", str(proc.pid)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(out.stdout)
    assert report["failures"] == 0, report["failure_examples"]
    assert report["events"] == 20 * (10 + 4)  # role, 10 tokens, finish, usage, [DONE]
    assert report["gaps"]["count"] == 20 * 10  # role to each token: the finish follows at once
    # The stub's schedule is fixed: a stream's 10 gaps add up to at least 10 intervals, less how
    # late its role event came; never much less, whatever the load.
    assert report["gaps"]["all_mean_ms"] >= 45
    plateau = report["plateau"]
    assert plateau is not None and plateau["kind"] == "open" and 0 < plateau["events"] < report["events"]
    assert report["peak_open"] == 20
    assert plateau["peak_rss_bytes"] > 0 and plateau["server_cpu_seconds"] >= 0


def test_a_stream_that_is_refused_is_a_failure_not_a_plateau(
    paced_stub: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = paced_stub
    argv = [sys.executable, str(BENCH / "streams_client.py"), "--url", url, "--key", ""]  # no key: 401
    argv += ["--model", "m", "--streams", "3", "--tokens", "2", "--ramp", "0.1"]
    argv += ["--server-pid", str(proc.pid)]
    report = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout)
    assert report["failures"] == 3 and "401" in report["failure_examples"][0]
    assert report["events"] == 0 and report["peak_open"] == 0


def _charged(*costs: int, held: int = 0, status: str = "success") -> dict[str, object]:
    generations = [
        {
            "status": status,
            "streamed": True,
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": 30,
            "cost": cost,
            "hold": exact_cost_pico(PROMPT_TOKENS, 40),
        }
        for cost in costs
    ]
    total = sum(costs)
    return {
        "generations": generations,
        "account_generations": len(costs),
        "account_generations_cost": total,
        "account_total_usage": total,
        "account_held": held,
    }


def test_the_charge_check_finds_every_departure_from_exact() -> None:
    exact = exact_cost_pico(PROMPT_TOKENS, 30)
    assert exact == 12 * 150_000 + 30 * 600_000  # $0.15 and $0.60 per million tokens, in pico-USD
    assert charged_exactly(_charged(exact, exact), 2, 30, failed=0) == []
    assert charged_exactly(_charged(exact), 2, 30, failed=0) == [
        "1 generations for 2 streams",
        "1 successes for 2 streams read to the end",
    ]
    (problem,) = charged_exactly(_charged(exact, exact + 1), 2, 30, failed=0)
    assert problem.startswith(f"1 not charged {exact} pico-USD exactly")
    assert charged_exactly(_charged(exact, exact, held=5), 2, 30, failed=0) == ["5 pico-USD still held"]
    found = _charged(exact, exact)
    found["account_total_usage"] = 2 * exact + 1
    assert charged_exactly(found, 2, 30, failed=0) == [
        f"account usage {2 * exact + 1} != its generations' costs {2 * exact}"
    ]
    refused = _charged(0, status="error")
    assert charged_exactly(refused, 1, 30, failed=1) == []
    assert charged_exactly(refused, 1, 30, failed=0) == ["0 successes for 1 streams read to the end"]


def test_the_floor_proxy_forks_its_workers_on_one_port_and_stops_them_all() -> None:
    stub, stub_url = _start(str(BENCH / "stub.py"))
    try:
        floor, url = _start(str(BENCH / "floor_proxy.py"), "--upstream", stub_url, "--workers", "2")
        children = subprocess.run(
            ["ps", "--ppid", str(floor.pid), "-o", "pid="], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == 2
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client() as client:
            for _ in range(4):
                resp = client.post(
                    url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}
                )
                assert resp.status_code == 200 and resp.json()["object"] == "chat.completion"
        floor.send_signal(signal.SIGTERM)
        assert floor.wait(15) == 0
        assert not any(Path(f"/proc/{child}").exists() for child in children)  # stopped and reaped
    finally:
        os.killpg(stub.pid, signal.SIGTERM)
        stub.wait(10)
