"""`nemorouter serve --workers N` (processes sharing one port and the shared backends), and a
gateway whose Redis is unreachable (rate limits fall back to this process; requests still flow).
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from test_postgres_gateway import SERVER, _on_server

from conftest import (
    NEMOROUTER,
    SIM_PROVIDER_SECRET,
    Gateway,
    Sim,
    _wait_for_line,
    free_port,
    stop,
    wait_until,
)

REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUICK = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def pg_env(workdir: Path, sim: Sim) -> Iterator[dict[str, str]]:
    name = f"nemo_test_{secrets.token_hex(6)}"
    prefix = f"nemo-test-{secrets.token_hex(6)}:"
    _on_server(f"CREATE DATABASE {name}")
    env = {
        **os.environ,
        "NEMO_DATA_DIR": str(workdir / f"empty-{name}"),
        "NEMO_DATABASE_URL": SERVER.rsplit("/", 1)[0] + "/" + name,
        "NEMO_REDIS_URL": REDIS,
        "NEMO_REDIS_PREFIX": prefix,
        "NEMO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "NEMO_ADMIN_TOKEN": "test-admin-" + secrets.token_hex(8),
    }
    setup = Gateway(data_dir=workdir, admin_token=env["NEMO_ADMIN_TOKEN"], env=env)
    try:
        setup.cli("init")
        setup.cli("providers", "add", "sim", "--kind", "openai", "--base-url", f"{sim.url}/v1")
        setup.cli("providers", "add-key", "sim", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
        setup.cli("models", "import", "--vendor", "openai", "--provider", "sim")
        yield env
    finally:
        _on_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _serve(env: dict[str, str], log: Path, *extra: str) -> tuple[subprocess.Popen[str], Gateway]:
    gw = Gateway(data_dir=log.parent, admin_token=env["NEMO_ADMIN_TOKEN"], env=env, port=free_port())
    proc = subprocess.Popen(
        [*NEMOROUTER, "serve", "--port", str(gw.port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(log, "a"),  # noqa: SIM115 - lives as long as the process
        text=True,
    )
    _wait_for_line(proc, "http://", 60)
    gw.proc = proc
    return proc, gw


def test_workers_need_redis(pg_env: dict[str, str]) -> None:
    env = {k: v for k, v in pg_env.items() if k != "NEMO_REDIS_URL"}
    result = subprocess.run(
        [*NEMOROUTER, "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ") and "NEMO_REDIS_URL" in result.stderr


def test_two_workers_share_one_port_and_their_limits(pg_env: dict[str, str], workdir: Path) -> None:
    proc, gw = _serve(pg_env, workdir / "workers.log", "--workers", "2")
    try:
        plain = redis.Redis.from_url(REDIS)
        channel = f"{pg_env['NEMO_REDIS_PREFIX']}config"
        # Two processes, each a whole gateway listening for config changes (it subscribes just after start).
        assert wait_until(lambda: plain.pubsub_numsub(channel)[0][1] == 2)
        plain.close()
        key = gw.key(gw.account("5.00"), rpm=6)
        with httpx.Client(timeout=30) as client:  # a new connection each time: both workers accept
            codes = [
                client.post(
                    f"{gw.url}/v1/chat/completions",
                    json=QUICK,
                    headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                ).status_code
                for _ in range(10)
            ]
        assert codes[:6] == [200] * 6 and set(codes[6:]) == {429}
        assert gw.verify()["ok"] is True
        # A worker that dies is replaced; the port keeps answering meanwhile.
        workers = _children(proc.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        assert wait_until(lambda: len(set(_children(proc.pid)) - {workers[0]}) == 2, timeout=30)
        other = gw.key(gw.account("5.00"))
        answer = httpx.post(
            f"{gw.url}/v1/chat/completions", json=QUICK, headers={"Authorization": f"Bearer {other}"}
        )
        assert answer.status_code == 200, answer.text
        workers = _children(proc.pid)
    finally:
        assert stop(proc) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # SIGTERM stopped every worker


def _children(pid: int) -> list[int]:
    """The live worker processes of a `serve --workers` parent."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def test_unreachable_redis_falls_back_to_this_process(pg_env: dict[str, str], workdir: Path) -> None:
    env = {**pg_env, "NEMO_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    proc, gw = _serve(env, workdir / "no-redis.log")
    try:
        key = gw.key(gw.account("5.00"), rpm=3)
        answers = [
            httpx.post(
                f"{gw.url}/v1/chat/completions", json=QUICK, headers={"Authorization": f"Bearer {key}"}
            )
            for _ in range(5)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert answers[3].headers["x-ratelimit-limit-requests"] == "3"
    finally:
        assert stop(proc) == 0
    assert "redis unreachable" in (workdir / "no-redis.log").read_text()
