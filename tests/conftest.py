"""Shared fixtures: real processes on loopback (the simulator and the gateway), real SQLite files.

Nothing here mocks NemoRouter's own code: tests drive the `nemorouter` command and its HTTP API
(a new gateway's setup runs the commands' own service calls in this process: `new_gateway`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from nemorouter.logs import JsonFormatter, RedactSecrets
from secret_scan import SESSION as SECRET_SCAN
from secret_scan import files_to_scan, report, scan

NEMOROUTER = [sys.executable, "-m", "nemorouter"]


# The fixtures' own HTTP calls share one client: a new one per call (httpx.get & co.) builds a TLS
# context each time, ~20 ms of CPU, thousands of times a run. No keep-alive, so each call still
# opens a connection of its own, as before, and a restarted gateway never meets a stale one.
HTTP = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Read stdout lines until one contains `needle` (in a thread, so a silent process can't hang us)."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if needle in line:
                found.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        raise RuntimeError(f"process did not print {needle!r} within {timeout}s")
    return found[0]


def stop(proc: subprocess.Popen[str], timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Sim:
    url: str
    proc: subprocess.Popen[str]

    def requests(self, limit: int = 1000) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = HTTP.get(f"{self.url}/_sim/requests", params={"limit": limit}).json()
        return found

    def clear(self) -> None:
        HTTP.delete(f"{self.url}/_sim/requests")


def start_sim(log_dir: Path) -> Sim:
    log = open(log_dir / "sim.log", "w")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [*NEMOROUTER, "sim", "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True
    )
    line = _wait_for_line(proc, "http://", 20)
    return Sim(line[line.index("http://") :].strip(), proc)


@dataclass
class Gateway:
    """A `nemorouter serve` process on its own data dir and SQLite file."""

    data_dir: Path
    admin_token: str
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if "add-key" in args:
            SECRET_SCAN.registry.add(input, "a provider secret")
        result = subprocess.run(
            [*NEMOROUTER, *args], env=self.env, input=input, capture_output=True, text=True, timeout=60
        )
        with open(self.data_dir / "cli.log", "a") as log:  # the CLI's log lines, for the secret scan
            log.write(result.stderr)
        for word in result.stdout.split():
            if word.startswith("sk-nemo-"):  # keys the CLI made (the scan must never find them)
                SECRET_SCAN.registry.add(word.strip("\"',"), "a customer key (CLI)")
        if check and result.returncode != 0:
            raise AssertionError(f"nemorouter {' '.join(args)} failed: {result.stderr}")
        return result

    def cli_json(self, *args: str, input: str | None = None) -> Any:
        return json.loads(self.cli(*args, input=input).stdout)

    def start(self) -> None:
        self.port = free_port()
        log = open(self.data_dir / "gateway.log", "a")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [*NEMOROUTER, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        _wait_for_line(self.proc, "http://", 30)

    def stop(self) -> int:
        return stop(self.proc) if self.proc is not None else 0

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if isinstance(body, dict) and isinstance(body.get("secret"), str):
            SECRET_SCAN.registry.add(body["secret"], "a provider secret")
        resp = HTTP.request(
            method,
            f"{self.url}/admin/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        if resp.headers.get("content-type", "").startswith("application/json"):
            created = resp.json()
            if isinstance(created, dict) and isinstance(created.get("key"), str):
                SECRET_SCAN.registry.add(created["key"], "a customer key")
        return resp

    def account(self, credits: str = "5.00", name: str = "test") -> str:
        created = self.admin("POST", "/accounts", {"name": name, "email": f"{name}@example.com"})
        assert created.status_code == 201, created.text
        account_id: str = created.json()["data"]["id"]
        if credits != "0":
            credited = self.admin(
                "POST", f"/accounts/{account_id}/credits", {"amount": credits, "reason": "test"}
            )
            assert credited.status_code == 201, credited.text
        return account_id

    def key(self, account_id: str, **fields: Any) -> str:
        created = self.admin("POST", f"/accounts/{account_id}/keys", {"name": "test", **fields})
        assert created.status_code == 201, created.text
        secret: str = created.json()["key"]
        return secret

    def management_key(self, account_id: str) -> str:
        created = self.admin("POST", f"/accounts/{account_id}/management-keys", {"name": "mgmt"})
        assert created.status_code == 201, created.text
        secret: str = created.json()["key"]
        return secret

    def balance(self, account_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.admin("GET", f"/accounts/{account_id}").json()["data"]
        return found

    def hold_of(self, body: dict[str, Any]) -> Decimal:
        """The worst case held for a chat `body`: the `needed` of the 402 of a key that affords nothing."""
        probe = self.key(self.account("1.00"), limit="0.000000000001")
        refused = HTTP.post(
            f"{self.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {probe}"}
        )
        assert refused.status_code == 402, refused.text
        needed: Decimal = json.loads(refused.text, parse_float=Decimal)["error"]["needed"]
        return needed

    def list_price(self, key: str, model: str, tokens: dict[str, int]) -> Decimal:
        """What a generation's `tokens` cost at `model`'s prices as `/v1/models/{id}` lists them
        (USD per token): the charge a request of that usage must have."""
        listed = httpx.get(f"{self.url}/v1/models/{model}", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200, listed.text
        price = {name: Decimal(value) for name, value in listed.json()["pricing"].items()}
        uncached = tokens["prompt"] - tokens["cached"] - tokens["cache_write"]
        return (
            uncached * price["prompt"]
            + tokens["cached"] * price["input_cache_read"]
            + tokens["cache_write"] * price["input_cache_write"]
            + tokens["completion"] * price["completion"]
            + price["request"]
        )

    def verify(self) -> dict[str, Any]:
        report: dict[str, Any] = self.admin("GET", "/ledger/verify").json()
        return report

    def openai(self, key: str, **kwargs: Any) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)


def new_gateway(base: Path, sim: Sim | None, *, via_cli: bool = False) -> Gateway:
    """Init a fresh data dir; register the simulator (if given) with the bundled OpenAI catalog.

    Done in this process by the same service calls the CLI makes (`init`, `providers add`,
    `providers add-key`, `models import`): four `nemorouter` processes cost ~2.5 s of CPU, and the
    suite makes ~150 gateways. The commands themselves are tested as commands (e2e/test_cli.py);
    `via_cli` runs them here too, for a test that looks at what the CLI wrote (its audit actor)."""
    data_dir = base / f"nemo-{secrets.token_hex(4)}"
    data_dir.mkdir(parents=True)
    token = "test-admin-" + secrets.token_hex(8)
    SECRET_SCAN.registry.add(token, "an admin token")
    env = {**os.environ, "NEMO_DATA_DIR": str(data_dir), "NEMO_ADMIN_TOKEN": token}
    # Many tests send bad keys on purpose from the same loopback address; the throttle has its own test.
    env["NEMO_AUTH_FAILURES_PER_MINUTE"] = "100000"
    env.pop("NEMO_DATABASE_URL", None)
    env.pop("NEMO_MASTER_KEY", None)
    gw = Gateway(data_dir=data_dir, admin_token=token, env=env)
    if via_cli:
        gw.cli("init")
        if sim is not None:
            gw.cli("providers", "add", "sim", "--kind", "openai", "--base-url", f"{sim.url}/v1")
            gw.cli("providers", "add-key", "sim", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
            gw.cli("models", "import", "--vendor", "openai", "--provider", "sim")
    else:
        in_own_loop(_set_up(env, None if sim is None else f"{sim.url}/v1"))
    return gw


async def _set_up(env: dict[str, str], sim_base_url: str | None) -> None:
    """What `new_gateway`'s four commands do, by the services they call."""
    from nemorouter.service.container import close_services, initialize, open_services
    from nemorouter.settings import Settings

    services = await open_services(Settings.from_env(env), create=True)
    try:
        await initialize(services)
        if sim_base_url is not None:
            await services.admin.create_provider({"name": "sim", "kind": "openai", "base_url": sim_base_url})
            await services.admin.add_provider_key("sim", {"secret": SIM_PROVIDER_SECRET, "label": "main"})
            await services.admin.import_models("openai", "sim")
    finally:
        await close_services(services)


def in_own_loop(work: Any) -> Any:
    """Run a coroutine on an event loop of its own, in a thread (a test may be inside one already)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


POSTGRES_SERVER = os.environ.get("NEMO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def on_postgres_server(sql: str) -> None:
    """One statement on the test PostgreSQL server, on a loop of its own (whatever pytest-asyncio runs)."""

    async def run() -> None:
        try:
            con = await asyncpg.connect(POSTGRES_SERVER, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(
                f"PostgreSQL is not reachable at {POSTGRES_SERVER} ({exc}); set NEMO_TEST_POSTGRES_URL"
            )
        try:
            await con.execute(sql)
        finally:
            await con.close()

    in_own_loop(run())


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for a test's gateways; its URL. Dropped afterwards, once the
    suite's secret scan has kept a dump of it."""
    name = f"nemo_test_{secrets.token_hex(6)}"
    on_postgres_server(f"CREATE DATABASE {name}")
    url = POSTGRES_SERVER.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        SECRET_SCAN.before_dropping_postgres(url)
        on_postgres_server(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


SIM_PROVIDER_SECRET = "sk-sim-vault-secret-" + secrets.token_hex(8)
SECRET_SCAN.registry.add(SIM_PROVIDER_SECRET, "the simulator's provider secret")


# -- the suite-wide secret scan (tests/secret_scan.py) ---------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _secret_scan_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every file the session writes lives under one base dir; in-process log lines go there too,
    through the same redaction filter and JSON format the server uses."""
    SECRET_SCAN.root = tmp_path_factory.getbasetemp()
    handler = logging.FileHandler(SECRET_SCAN.own_dir / "in-process.log")
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # the server's level
    root.addHandler(handler)
    yield
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """What in-process code wrote to standard error (captured by pytest) is a log line too."""
    if SECRET_SCAN.root is not None and report.capstderr:
        with open(SECRET_SCAN.own_dir / "captured-stderr.log", "a") as out:
            out.write(report.capstderr)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: a worker finished; its secrets and files join the scan."""
    finished = getattr(node, "workeroutput", {}).get("secret_scan")
    if finished is not None:
        SECRET_SCAN.add_worker(finished)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Last of all: no plaintext secret in any log line or database the suite wrote. A pytest-xdist
    worker hands its part to the controller (pytest_testnodedown), which scans it all."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        if SECRET_SCAN.root is not None:
            workeroutput["secret_scan"] = SECRET_SCAN.for_controller()
        return
    if not SECRET_SCAN.roots():
        return
    paths = [path for root in SECRET_SCAN.roots() for path in files_to_scan(root)]
    hits = scan(paths, SECRET_SCAN.registry)
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if hits:
        text = report(hits, len(paths))
        if terminal is not None:
            terminal.write_line("\n" + text, red=True, bold=True)
        else:
            print(text, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif terminal is not None:  # one line, so a run shows the scan happened and what it covered
        terminal.write_line(
            f"\nsecret scan: {len(paths)} log/database files, {len(SECRET_SCAN.registry.secrets)} secrets: clean"
        )


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nemorouter")


@pytest.fixture(scope="session")
def sim(workdir: Path) -> Iterator[Sim]:
    server = start_sim(workdir)
    yield server
    stop(server.proc)


@pytest.fixture(scope="session")
def gateway(workdir: Path, sim: Sim) -> Iterator[Gateway]:
    """One gateway for the session; tests make their own accounts and keys."""
    gw = new_gateway(workdir, sim)
    gw.start()
    yield gw
    assert gw.stop() == 0


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
