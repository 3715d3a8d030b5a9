"""What a server's or a command's start does not pay for: work that only some requests need is made
when one first does. Each costs every `nemorouter serve` (and each of the test suite's ~200 gateways)
~0.3 s of CPU at its start: the console's dummy password hash (argon2id, 64 MiB), made at the
first sign-in; aiohttp, which only alert deliveries use, loaded at the first delivery. A command
(`init`, `keys create`, ...) loads neither the request path nor pydantic (typer 0.29's option
coercion did, ~0.2 s).

Run in a fresh interpreter, since this one has loaded everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, json, sys
import nemorouter.cli.server  # the server's whole import graph: the app, the console, the jobs
from nemorouter.console import security
from nemorouter.service.container import close_services, initialize, open_services, start_gateway
from nemorouter.settings import Settings


async def main():
    services = await open_services(Settings.from_env(), create=True)
    await initialize(services)
    await start_gateway(services, "start-cost")
    stopping = asyncio.Event()
    worker = asyncio.create_task(services.outbox.run(stopping))
    await asyncio.sleep(0.3)  # a few polls of an empty outbox
    idle = {"aiohttp": "aiohttp" in sys.modules, "dummy_hashes": security._dummy_hash.cache_info().currsize}
    stopping.set()
    await worker
    assert await security.password_ok(None, "not a password") is False  # an unknown email
    made = security._dummy_hash.cache_info().currsize
    await close_services(services)
    print(json.dumps({**idle, "dummy_hashes_after_sign_in": made}))


asyncio.run(main())
"""


def in_fresh_interpreter(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`code` run by a new Python on a fresh SQLite data dir of its own; it must succeed."""
    env = {**os.environ, "NEMO_DATA_DIR": str(tmp_path / "data"), "NEMO_ADMIN_TOKEN": "start-cost-token"}
    env.pop("NEMO_DATABASE_URL", None)
    env.pop("NEMO_REDIS_URL", None)
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    return ran


def test_a_server_starts_without_the_dummy_hash_or_aiohttp(tmp_path: Path) -> None:
    found = json.loads(in_fresh_interpreter(SCRIPT, tmp_path).stdout.strip().splitlines()[-1])
    assert found == {"aiohttp": False, "dummy_hashes": 0, "dummy_hashes_after_sign_in": 1}


COMMAND = """
import json, sys
from nemorouter.cli.main import app

WATCHED = ("pydantic", "aiohttp", "nemorouter.service.gateway", "nemorouter.engine.http", "nemorouter.app")
try:
    app(["init"], standalone_mode=False)
finally:
    print(json.dumps(sorted(name for name in WATCHED if name in sys.modules)), file=sys.stderr)
"""


def test_a_command_loads_neither_the_request_path_nor_pydantic(tmp_path: Path) -> None:
    ran = in_fresh_interpreter(COMMAND, tmp_path)
    assert json.loads(ran.stdout)["migrations_applied"]  # the command ran
    assert json.loads(ran.stderr.strip().splitlines()[-1]) == []
