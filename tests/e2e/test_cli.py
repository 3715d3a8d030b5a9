"""The `nemorouter` command: init, the admin commands (JSON on stdout), one-line errors on bad input,
and the CLI and a running server sharing one database."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Gateway, Sim, free_port, new_gateway
from nemorouter.service.keyformat import key_scope

MINI = "openai/gpt-4o-mini"


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def fresh_gateway(base: Path, *, admin_token: bool = True) -> Gateway:
    """A Gateway object on a new, empty data dir (nothing run yet)."""
    data_dir = base / f"cli-{secrets.token_hex(4)}"
    data_dir.mkdir(parents=True)
    token = "test-admin-" + secrets.token_hex(8)
    env = {**os.environ, "NEMO_DATA_DIR": str(data_dir), "NEMO_ADMIN_TOKEN": token}
    for name in ("NEMO_DATABASE_URL", "NEMO_MASTER_KEY", "NEMO_REDIS_URL"):
        env.pop(name, None)
    if not admin_token:
        env.pop("NEMO_ADMIN_TOKEN")
        token = ""
    return Gateway(data_dir=data_dir, admin_token=token, env=env)


class Recorder:
    """Runs CLI commands and keeps everything they printed (to check no secret was ever printed)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.printed: list[str] = []

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self.gw.cli(*args, input=input, check=False)
        self.printed += [result.stdout, result.stderr]
        return result

    def json(self, *args: str, input: str | None = None) -> Any:
        result = self.run(*args, input=input)
        assert result.returncode == 0, f"nemorouter {' '.join(args)}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return exact(result.stdout)

    def fails(self, *args: str, input: str | None = None) -> str:
        return one_line_error(self.run(*args, input=input))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), result.stderr
    assert result.stdout.strip() == "", result.stdout
    return lines[0]


# -- init ---------------------------------------------------------------------------------------


def test_init_is_idempotent_and_keeps_the_master_key(workdir: Path) -> None:
    gw = fresh_gateway(workdir)
    first = exact(gw.cli("init").stdout)
    assert first["migrations_applied"], first
    assert first["catalog_models"] > 0
    assert first["data_dir"] == str(gw.data_dir)
    master = gw.data_dir / "master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    key_bytes = master.read_bytes()

    second_run = gw.cli("init")
    second = exact(second_run.stdout)
    assert second["migrations_applied"] == []
    assert second["catalog_models"] == first["catalog_models"]
    assert "operator token" not in second_run.stderr
    assert master.read_bytes() == key_bytes, "a second init must not replace the master key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600


def test_init_without_admin_token_prints_one_once(workdir: Path) -> None:
    gw = fresh_gateway(workdir, admin_token=False)
    assert "NEMO_ADMIN_TOKEN" not in gw.env
    first = gw.cli("init")
    tokens = re.findall(r"nemo-admin-[A-Za-z0-9_\-]+", first.stderr)
    assert len(tokens) == 1, first.stderr
    token = tokens[0]
    assert token not in first.stdout
    assert stat.S_IMODE((gw.data_dir / "master.key").stat().st_mode) == 0o600

    second = gw.cli("init")
    assert token not in second.stdout + second.stderr
    assert "nemo-admin-" not in second.stdout + second.stderr
    assert exact(second.stdout)["migrations_applied"] == []

    # Only its hash is stored; the printed token is the operator token of a server on this dir.
    for path in gw.data_dir.glob("nemorouter.db*"):
        assert token.encode() not in path.read_bytes()
    gw.start()
    try:
        gw.admin_token = token
        assert gw.admin("GET", "/accounts").status_code == 200
        gw.admin_token = "nemo-admin-wrong"
        refused = gw.admin("GET", "/accounts")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == 401
    finally:
        assert gw.stop() == 0
    assert token not in (gw.data_dir / "gateway.log").read_text()


# -- the admin commands -------------------------------------------------------------------------


def test_admin_commands_print_json(workdir: Path, sim: Sim) -> None:
    gw = new_gateway(workdir, None)
    cli = Recorder(gw)
    provider_secret = "sk-sim-cli-secret-" + secrets.token_hex(12)

    # providers
    added = cli.json("providers", "add", "sim", "--kind", "openai", "--base-url", f"{sim.url}/v1")["data"]
    assert added["name"] == "sim" and added["kind"] == "openai"
    assert added["base_url"] == f"{sim.url}/v1"
    vault_key = cli.json("providers", "add-key", "sim", "--label", "main", input=provider_secret + "\n")[
        "data"
    ]
    assert vault_key["label"] == "main" and vault_key["id"] and vault_key["fingerprint"]
    listed = cli.json("providers", "list")["data"]
    assert [p["name"] for p in listed] == ["sim"]
    assert [k["id"] for k in listed[0]["keys"]] == [vault_key["id"]]
    assert listed[0]["keys"][0]["fingerprint"] == vault_key["fingerprint"]
    # A second vault key, read from an environment variable instead of stdin.
    env_secret = "sk-sim-cli-env-" + secrets.token_hex(12)
    gw.env["MY_PROVIDER_SECRET"] = env_secret
    from_env = cli.json("providers", "add-key", "sim", "--label", "env", "--secret-env", "MY_PROVIDER_SECRET")
    assert from_env["data"]["label"] == "env" and from_env["data"]["fingerprint"] != vault_key["fingerprint"]

    # models
    imported = cli.json("models", "import", "--vendor", "openai", "--provider", "sim")["data"]
    ids = {m["id"] for m in imported}
    assert {MINI, "openai/text-embedding-3-small"} <= ids
    mini = next(m for m in imported if m["id"] == MINI)
    assert [(d["provider"], d["upstream_model"]) for d in mini["deployments"]] == [("sim", "gpt-4o-mini")]
    assert {m["id"] for m in cli.json("models", "list")["data"]} == ids

    custom = cli.json(
        "models",
        "add",
        "acme/custom",
        "--input",
        "1.5",
        "--output",
        "3",
        "--max-output",
        "1000",
        "--deploy",
        "sim:gpt-4o-mini",
        "--deploy",
        "sim:gpt-4o:1:2",
    )["data"]
    assert custom["id"] == "acme/custom" and custom["max_output"] == 1000
    deployments = sorted((d["upstream_model"], d["priority"], d["weight"]) for d in custom["deployments"])
    assert deployments == [("gpt-4o", 1, 2), ("gpt-4o-mini", 0, 1)]
    assert cli.json("models", "delete", "acme/custom")["data"]["deleted"] is True
    assert {m["id"] for m in cli.json("models", "list")["data"]} == ids

    # accounts and credits
    account = cli.json("accounts", "create", "acme", "--email", "ops@acme.example")["data"]
    account_id = account["id"]
    assert account["name"] == "acme" and account["email"] == "ops@acme.example"
    assert account["balance"] == 0 and account["held"] == 0
    assert cli.json("accounts", "get", account_id)["data"]["id"] == account_id
    assert account_id in {a["id"] for a in cli.json("accounts", "list")["data"]}

    credited = cli.json("credits", "add", account_id, "12.345678901", "--reason", "wire")
    assert credited["created"] is True
    assert credited["data"]["amount"] == Decimal("12.345678901")
    assert credited["data"]["reason"] == "wire"
    once = cli.json("credits", "add", account_id, "5", "--idempotency-key", "invoice-42")
    twice = cli.json("credits", "add", account_id, "5", "--idempotency-key", "invoice-42")
    assert once["created"] is True and twice["created"] is False
    assert twice["data"]["id"] == once["data"]["id"]
    got = cli.json("accounts", "get", account_id)["data"]
    assert got["balance"] == Decimal("17.345678901")
    assert got["total_credits"] == Decimal("17.345678901")

    # keys
    created = cli.json(
        "keys",
        "create",
        account_id,
        "--name",
        "k1",
        "--limit",
        "2.5",
        "--limit-reset",
        "weekly",
        "--rpm",
        "10",
        "--allowed-model",
        MINI,
    )
    secret, key = created["key"], created["data"]
    assert secret.startswith("sk-nemo-v1-") and key_scope(secret) == "inference"
    assert key["name"] == "k1" and key["limit"] == Decimal("2.5") and key["limit_reset"] == "weekly"
    assert key["rate_limit"]["rpm"] == 10 and key["allowed_models"] == [MINI]
    key_id = key["id"]
    assert key_id in {k["id"] for k in cli.json("keys", "list", account_id)["data"]}
    fetched = cli.json("keys", "get", key_id)
    assert "key" not in fetched and fetched["data"]["id"] == key_id
    assert secret not in json.dumps(fetched, default=str)

    updated = cli.json("keys", "update", key_id, "--name", "k1b", "--disabled")["data"]
    assert updated["name"] == "k1b" and updated["disabled"] is True
    assert cli.json("keys", "update", key_id, "--no-disabled")["data"]["disabled"] is False

    rotated = cli.json("keys", "rotate", key_id, "--grace-seconds", "60")
    assert rotated["key"] != secret and key_scope(rotated["key"]) == "inference"
    assert rotated["data"]["id"] == key_id and rotated["data"]["name"] == "k1b"

    revoked = cli.json("keys", "revoke", key_id)["data"]
    assert revoked["id"] == key_id and revoked["revoked"] is True

    mgmt = cli.json("management-keys", "create", account_id, "--name", "ops")
    assert mgmt["key"].startswith("sk-nemo-mgmt-v1-") and key_scope(mgmt["key"]) == "management"

    verified = cli.run("ledger", "verify")
    assert verified.returncode == 0, verified.stderr
    assert exact(verified.stdout)["ok"] is True

    # The provider secret went in on stdin and never came out.
    assert all(provider_secret not in text and env_secret not in text for text in cli.printed)
    for path in gw.data_dir.glob("nemorouter.db*"):
        data = path.read_bytes()
        assert provider_secret.encode() not in data and env_secret.encode() not in data
        assert secret.encode() not in data and rotated["key"].encode() not in data


# -- bad input ----------------------------------------------------------------------------------

_ACCOUNT = "{account}"
_PORT = "{port}"

BAD_COMMANDS: dict[str, tuple[list[str], str | None]] = {
    # A negative amount typed as is reads like an option: still one clear line.
    "credits_negative_amount_unseparated": (["credits", "add", _ACCOUNT, "-5"], None),
    "deploy_bad_priority": (
        ["models", "add", "acme/m2", "--input", "1", "--deploy", "sim:gpt-4o-mini:high"],
        None,
    ),
    "credits_unknown_account": (["credits", "add", "acct_doesnotexist", "5"], None),
    "credits_negative_amount": (["credits", "add", _ACCOUNT, "--", "-5"], None),
    "credits_garbage_amount": (["credits", "add", _ACCOUNT, "five dollars"], None),
    "add_key_unknown_provider": (
        ["providers", "add-key", "nope", "--label", "x"],
        "sk-sim-stdin-secret-9f3a\n",
    ),
    "provider_bad_kind": (
        ["providers", "add", "p2", "--kind", "banana", "--base-url", "http://x.example"],
        None,
    ),
    "deploy_without_colon": (["models", "add", "acme/m", "--input", "1", "--deploy", "sim"], None),
    "keys_limit_reset_yearly": (["keys", "create", _ACCOUNT, "--name", "k", "--limit-reset", "yearly"], None),
    "serve_two_workers": (["serve", "--workers", "2", "--port", _PORT], None),
}


@pytest.fixture(scope="module")
def bad_runs(workdir: Path) -> dict[str, Any]:
    """Every bad command, run concurrently against one initialized data dir (and one uninitialized)."""
    gw = new_gateway(workdir, None)
    account = exact(gw.cli("accounts", "create", "bad-input").stdout)["data"]["id"]
    gw.cli("credits", "add", account, "1.25")
    commands = {name: (argv, stdin) for name, (argv, stdin) in BAD_COMMANDS.items()}

    def run(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        args = [a.replace(_ACCOUNT, account).replace(_PORT, str(free_port())) for a in argv]
        return gw.cli(*args, input=stdin, check=False)

    uninitialized = fresh_gateway(workdir)
    empty_dir = uninitialized.data_dir / "never-initialized"
    uninitialized.env["NEMO_DATA_DIR"] = str(empty_dir)
    jobs: dict[str, Callable[[], subprocess.CompletedProcess[str]]] = {
        name: (lambda argv=argv, stdin=stdin: run(argv, stdin)) for name, (argv, stdin) in commands.items()
    }
    jobs["uninitialized_accounts_list"] = lambda: uninitialized.cli("accounts", "list", check=False)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
    return {"gw": gw, "account": account, "results": results}


@pytest.mark.parametrize("case", [*BAD_COMMANDS, "uninitialized_accounts_list"])
def test_bad_input_is_one_error_line(bad_runs: dict[str, Any], case: str) -> None:
    result = bad_runs["results"][case]
    line = one_line_error(result)
    assert "sk-sim-stdin-secret" not in result.stdout + result.stderr
    if case.startswith("uninitialized"):
        assert "init" in line


def test_bad_input_changed_nothing(bad_runs: dict[str, Any]) -> None:
    gw: Gateway = bad_runs["gw"]
    account = exact(gw.cli("accounts", "get", bad_runs["account"]).stdout)["data"]
    assert account["balance"] == Decimal("1.25") and account["total_credits"] == Decimal("1.25")
    assert exact(gw.cli("keys", "list", bad_runs["account"]).stdout)["data"] == []
    assert exact(gw.cli("ledger", "verify").stdout)["ok"] is True


# -- the CLI and the running server share the database ------------------------------------------


def _chat(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": MINI, "messages": [{"role": "user", "content": "Hello from the CLI"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _eventually(gw: Gateway, key: str, status: int, timeout: float = 1.0) -> httpx.Response:
    """The server notices another process's change within its cache interval."""
    deadline = time.monotonic() + timeout
    resp = _chat(gw, key)
    while resp.status_code != status and time.monotonic() < deadline:
        time.sleep(0.05)
        resp = _chat(gw, key)
    return resp


def test_cli_key_works_on_the_running_server(gateway: Gateway) -> None:
    cli = Recorder(gateway)
    account = cli.json("accounts", "create", "cli-live", "--email", "live@example.com")["data"]["id"]
    cli.json("credits", "add", account, "1.00")
    served_balance = gateway.admin("GET", f"/accounts/{account}")
    assert exact(served_balance.text)["data"]["balance"] == Decimal("1.00")

    created = cli.json("keys", "create", account, "--name", "from-cli")
    secret, key_id = created["key"], created["data"]["id"]
    ok = _chat(gateway, secret)
    assert ok.status_code == 200, ok.text
    cost = Decimal(ok.headers["x-nemo-cost"])
    seen = cli.json("accounts", "get", account)["data"]
    assert seen["balance"] == Decimal("1.00") - cost and seen["held"] == 0

    cli.json("keys", "update", key_id, "--disabled")
    refused = _eventually(gateway, secret, 401)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "key_disabled", refused.text
    cli.json("keys", "update", key_id, "--no-disabled")
    back = _eventually(gateway, secret, 200)
    assert back.status_code == 200, back.text

    cli.json("keys", "revoke", key_id)
    revoked = _eventually(gateway, secret, 401)
    assert revoked.status_code == 401, revoked.text
    assert revoked.json() == {
        "error": {"code": 401, "type": "key_revoked", "message": revoked.json()["error"]["message"]}
    }

    assert gateway.verify()["ok"] is True
