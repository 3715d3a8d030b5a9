"""Issue 20, scope 9 ("the lows from the same probe"), through the real gateway and simulator:
trusted proxies and X-Forwarded-For, JSON nested too deep, bad environment values, the public
leak endpoint under a flood, file modes, business series on an open /metrics, provider secrets
with control characters."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import NEMOROUTER, Gateway, Sim, new_gateway, wait_until
from nemorouter.service.keyformat import new_key

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def _started(gw: Gateway, **env: str) -> Gateway:
    gw.env.update(env)
    gw.start()
    return gw


# -- 1. trusted proxies: whose X-Forwarded-For names the client --------------------------------------


@pytest.fixture
def behind_proxy(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    """Loopback (where the tests connect from) is the trusted proxy; 5 failures per minute."""
    gw = _started(
        new_gateway(tmp_path, sim),
        NEMO_TRUSTED_PROXIES="127.0.0.1, 10.9.0.0/16",
        NEMO_AUTH_FAILURES_PER_MINUTE="5",
    )
    yield gw
    assert gw.stop() == 0


@pytest.fixture
def direct(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    """No trusted proxy (the default); 5 failures per minute."""
    gw = _started(new_gateway(tmp_path, sim), NEMO_AUTH_FAILURES_PER_MINUTE="5")
    yield gw
    assert gw.stop() == 0


def _chat(gw: Gateway, key: str, forwarded: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30).status_code


def test_a_trusted_proxy_names_the_client_for_the_auth_throttle(behind_proxy: Gateway) -> None:
    gw = behind_proxy
    good = gw.key(gw.account("1.00"))
    statuses = Counter(_chat(gw, new_key("inference"), "203.0.113.7") for _ in range(12))
    assert statuses[429] >= 5 and statuses[401] >= 5, statuses
    # That client is throttled, even with a good key, and cannot dodge it by adding addresses on
    # the left (the right-most address that is not a trusted proxy is the client)...
    assert _chat(gw, good, "203.0.113.7") == 429
    assert _chat(gw, good, "198.51.100.1, 203.0.113.7") == 429
    assert _chat(gw, good, "198.51.100.1, 203.0.113.7, 10.9.3.4") == 429  # through a second proxy
    # ...while another client behind the same proxy is served.
    assert _chat(gw, good, "203.0.113.8") == 200
    assert _chat(gw, good, "203.0.113.7, 203.0.113.8") == 200


def test_a_trusted_proxy_names_the_client_for_the_leak_limit(behind_proxy: Gateway) -> None:
    gw = behind_proxy

    def report(forwarded: str) -> int:
        return httpx.post(
            f"{gw.url}/v1/leaks", json={"items": []}, headers={"X-Forwarded-For": forwarded}, timeout=30
        ).status_code

    # 30 in a burst, then one every 2 s: 40 quick ones from one client meet a 429.
    answers = [report("203.0.113.20") for _ in range(40)]
    assert answers[:30] == [202] * 30 and 429 in answers
    assert report("203.0.113.21") == 202


def _sign_in(client: httpx.Client, email: str) -> int:
    """One failed console sign-in, as a browser makes it (the login CSRF cookie and field)."""
    page = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None, page.text[:200]
    form = {"csrf": csrf.group(1), "mode": "user", "email": email, "password": "not the password"}
    return client.post("/console/login", data=form).status_code


def test_a_trusted_proxy_names_the_client_for_the_console_sign_in_throttle(behind_proxy: Gateway) -> None:
    url = behind_proxy.url
    with (
        httpx.Client(base_url=url, headers={"X-Forwarded-For": "203.0.113.30"}, timeout=30) as guesser,
        httpx.Client(base_url=url, headers={"X-Forwarded-For": "203.0.113.31"}, timeout=30) as other,
    ):
        statuses = []
        for i in range(45):  # a different email each time: only the address counts them all
            statuses.append(_sign_in(guesser, f"guess-{i}@example.com"))
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429 and statuses.count(401) >= 30, statuses
        assert _sign_in(other, "someone@example.com") == 401


def test_an_untrusted_peer_cannot_choose_its_address(direct: Gateway) -> None:
    gw = direct
    good = gw.key(gw.account("1.00"))
    # Each guess claims another address: ignored, they all count against the real peer.
    statuses = Counter(_chat(gw, new_key("inference"), f"198.51.100.{i}") for i in range(12))
    assert statuses[429] >= 5, statuses
    assert _chat(gw, good, "203.0.113.99") == 429
    leaks = [
        httpx.post(
            f"{gw.url}/v1/leaks", json={"items": []}, headers={"X-Forwarded-For": f"198.51.100.{i}"}
        ).status_code
        for i in range(40)
    ]
    assert 429 in leaks


# -- 2. JSON nested deeper than we can write again: a 400, the server still serving ----------------


def _depth(raw: bytes) -> int:
    deepest = depth = 0
    for byte in raw:  # no strings with brackets in these bodies
        depth += (byte in b"[{") - (byte in b"]}")
        deepest = max(deepest, depth)
    return deepest


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [129, 300, 100_000])
def test_deep_json_is_a_400_on_every_json_entry_point(gateway: Gateway, depth: int) -> None:
    account = gateway.account("1.00")
    key = gateway.key(account)
    management = gateway.management_key(account)
    deep = _nested(depth)
    inference = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    cases = [
        (
            "/v1/chat/completions",
            inference,
            b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":' + deep + b"}]}",
        ),
        ("/v1/embeddings", inference, b'{"model":"openai/text-embedding-3-small","input":' + deep + b"}"),
        (
            "/v1/messages",
            inference,
            b'{"model":"openai/gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":'
            + deep
            + b"}]}",
        ),
        ("/v1/leaks", {}, b'{"items":' + deep + b"}"),
        ("/v1/keys", {"Authorization": f"Bearer {management}"}, b'{"name":' + deep + b"}"),
        ("/admin/v1/accounts", {"Authorization": f"Bearer {gateway.admin_token}"}, b'{"name":' + deep + b"}"),
        (
            f"/admin/v1/accounts/{account}/credits",
            {"Authorization": f"Bearer {gateway.admin_token}"},
            b'{"amount":"1.00","reason":' + deep + b"}",
        ),
    ]
    for path, headers, body in cases:
        answer = httpx.post(f"{gateway.url}{path}", content=body, headers=headers, timeout=30)
        assert answer.status_code == 400, (path, answer.status_code, answer.text[:300])
        error = answer.json()["error"]
        kind = error.get("nemo_type", error["type"])  # /v1/messages answers in Anthropic's shape
        assert kind == "invalid_request", (path, error)
        assert "nested deeper than 128 levels" in error["message"], (path, error)
    assert Decimal(str(gateway.balance(account)["balance"])) == Decimal("1.00")  # nothing credited
    assert _chat(gateway, key) == 200  # still serving


def test_integers_no_column_can_hold_are_a_400_on_the_admin_and_management_apis(gateway: Gateway) -> None:
    account = gateway.account("1.00")
    management = gateway.management_key(account)
    huge = "1" + "0" * 26
    cases = [
        ("PATCH", f"/admin/v1/accounts/{account}", gateway.admin_token, '{"rpm": ' + huge + "}"),
        (
            "POST",
            f"/admin/v1/accounts/{account}/keys",
            gateway.admin_token,
            '{"name": "k", "rpm": ' + huge + "}",
        ),
        ("POST", "/v1/keys", management, '{"name": "k", "tpm": -' + huge + "}"),
        ("POST", "/admin/v1/accounts", gateway.admin_token, '{"name": "n", "rpm": 9223372036854775808}'),
    ]
    for method, path, token, body in cases:
        answer = httpx.request(
            method,
            f"{gateway.url}{path}",
            content=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["type"] == "invalid_request" and "out of range" in answer.text
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200


def test_nesting_up_to_the_limit_is_not_refused_for_depth(gateway: Gateway) -> None:
    key = gateway.key(gateway.account("1.00"))
    # 128 levels in all: the body, `tools`, a tool, its `function`, and a schema 124 deep.
    schema = b'{"type":"object","properties":{"a":' * 61 + b'{"x":{}}' + b"}}" * 61
    body = (
        b'{"model":"openai/gpt-4o-mini","max_tokens":3,"messages":[{"role":"user","content":"hi"}],'
        b'"tools":[{"type":"function","function":{"name":"f","parameters":' + schema + b"}}]}"
    )
    assert _depth(body) == 128
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:300]


# -- 3. every bad environment value: one `error:` line and a non-zero exit -------------------------

_SHORT_KEY = base64.b64encode(b"x" * 16).decode()

BAD_ENV = [
    ("NEMO_MAX_BODY_BYTES", "abc"),
    ("NEMO_MAX_BODY_BYTES", "0"),
    ("NEMO_MAX_BODY_BYTES", "1.5"),
    ("NEMO_AUTH_FAILURES_PER_MINUTE", "0"),
    ("NEMO_AUTH_FAILURES_PER_MINUTE", "-3"),
    ("NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE", "-1"),
    ("NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE", "lots"),
    ("NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE", "2.5"),
    ("NEMO_MAX_HEADER_BYTES", "-1"),
    ("NEMO_MAX_HEADER_BYTES", "64k"),
    ("NEMO_SHUTDOWN_GRACE", "soon"),
    ("NEMO_SHUTDOWN_GRACE", "nan"),
    ("NEMO_SSE_KEEPALIVE", "0"),
    ("NEMO_CLIENT_HEADER_TIMEOUT", "-1"),
    ("NEMO_CLIENT_BODY_TIMEOUT", "inf"),
    ("NEMO_ALERT_RETRY_BASE", "x"),
    ("NEMO_ALERT_RETRY_CAP", "1"),
    ("NEMO_ALERT_RETRY_FOR", "0"),
    ("NEMO_PROCESS_LEASE", "x"),
    ("NEMO_PROCESS_LEASE_RENEW", "20"),
    ("NEMO_DB_POOL_MIN", "x"),
    ("NEMO_DB_POOL_MAX", "0"),
    ("NEMO_DB_COMMAND_TIMEOUT", "-3"),
    ("NEMO_DB_COMMAND_TIMEOUT", "nan"),
    ("NEMO_LOG_LEVEL", "LOUD"),
    ("NEMO_DATABASE_URL", "mysql://db/nemo"),
    ("NEMO_REDIS_URL", "localhost:6379"),
    ("NEMO_MASTER_KEY", "not base64!"),
    ("NEMO_MASTER_KEY", _SHORT_KEY),
    ("NEMO_OPERATOR_ALERT_SECRET", "whsec_!!"),
    ("NEMO_OPERATOR_ALERT_URL", "ftp://alerts.example"),
    ("NEMO_STRIPE_TOPUP_URL", "javascript:alert(1)"),
    ("NEMO_OTLP_ENDPOINT", "collector:4318"),
    ("NEMO_TRUSTED_PROXIES", "10.0.0.0/33"),
    ("NEMO_TRUSTED_PROXIES", "proxy.internal"),
    ("NEMO_METRICS_PUBLIC_MONEY", "maybe"),
    ("NEMO_CORS_ORIGINS", "https://app.example/path"),
    ("NEMO_CORS_ORIGINS", "*, https://app.example"),
]


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return new_gateway(tmp_path_factory.mktemp("env"), None)


def _one_error_line(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert name in lines[0], lines[0]


@pytest.mark.parametrize(("name", "value"), BAD_ENV, ids=[f"{n}={v}" for n, v in BAD_ENV])
def test_a_bad_environment_value_stops_serve_with_one_line(
    initialized: Gateway, name: str, value: str
) -> None:
    env = {**initialized.env, name: value}
    if name == "NEMO_ALERT_RETRY_CAP":
        env["NEMO_ALERT_RETRY_BASE"] = "5"
    result = subprocess.run(
        [*NEMOROUTER, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    _one_error_line(result, name)


def test_a_data_dir_that_is_a_file_and_a_bad_value_for_the_cli(initialized: Gateway, tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    for env in ({"NEMO_DATA_DIR": str(a_file)}, {"NEMO_MAX_BODY_BYTES": "abc"}):
        for args in (["serve", "--port", "0"], ["init"], ["accounts", "list"]):
            result = subprocess.run(
                [*NEMOROUTER, *args],
                env={**initialized.env, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            _one_error_line(result, next(iter(env)))


# -- 4. a flood of leak reports does not hold up inference ------------------------------------------


async def _flood_while_serving(
    gw: Gateway, key: str, seconds: float
) -> tuple[list[float], list[int], Counter[int]]:
    report = {"items": [{"token": new_key("inference")} for _ in range(2000)]}
    latencies: list[float] = []
    statuses: list[int] = []
    leaks: Counter[int] = Counter()
    stop_at = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:

        async def flood() -> None:
            while time.monotonic() < stop_at:
                # Each report from another address (a botnet, or IPv6): only the all-address
                # budgets stand between the flood and the event loop.
                forwarded = {"X-Forwarded-For": f"2001:db8::{secrets.randbits(32):x}"}
                answer = await client.post("/v1/leaks", json=report, headers=forwarded)
                leaks[answer.status_code] += 1

        async def infer() -> None:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                answer = await client.post(
                    "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
                )
                latencies.append(time.monotonic() - started)
                statuses.append(answer.status_code)
                await asyncio.sleep(0.05)

        await asyncio.gather(*(flood() for _ in range(8)), *(infer() for _ in range(4)))
    return latencies, statuses, leaks


@pytest.fixture
def flooded(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    """Its own gateway (the flood uses up the leak budgets for a minute), behind a "proxy" on
    loopback so that every report can claim another client address."""
    gw = _started(new_gateway(tmp_path, sim), NEMO_TRUSTED_PROXIES="127.0.0.1")
    yield gw
    assert gw.stop() == 0


def test_a_leak_flood_leaves_inference_answering(flooded: Gateway) -> None:
    gateway = flooded
    key = gateway.key(gateway.account("5.00"))
    latencies, statuses, leaks = asyncio.run(_flood_while_serving(gateway, key, 6.0))
    assert statuses and set(statuses) == {200}, Counter(statuses)
    assert len(statuses) >= 8  # inference kept flowing through the flood
    assert max(latencies) < 5.0, max(latencies)  # loose: a blocked loop would show as many seconds
    assert set(leaks) <= {202, 429} and leaks[429] > 0 and leaks[202] >= 1, leaks
    assert gateway.verify()["ok"] is True


def test_many_addresses_together_meet_the_overall_leak_budgets() -> None:
    """Addresses are cheap (IPv6, botnets): the all-address budgets bound the total."""
    from nemorouter.app.public import ALL_LOOKUPS_PER_MINUTE, ALL_REPORTS_PER_MINUTE, LeakLimits
    from nemorouter.errors import RateLimited

    now = [1000.0]
    limits = LeakLimits(clock=lambda: now[0])
    for i in range(ALL_REPORTS_PER_MINUTE):
        limits.reports.take(f"2001:db8::{i:x}", 1, "leak reports")
    with pytest.raises(RateLimited, match="from all addresses"):
        limits.reports.take("2001:db8::ffff", 1, "leak reports")
    for i in range(ALL_LOOKUPS_PER_MINUTE // 2000):
        limits.lookups.take(f"198.51.100.{i}", 2000, "keys reported")
    with pytest.raises(RateLimited, match="from all addresses") as refused:
        limits.lookups.take("198.51.100.200", 1, "keys reported")
    assert refused.value.status == 429
    now[0] += 60  # a minute later both budgets are whole again
    limits.reports.take("2001:db8::ffff", 1, "leak reports")
    limits.lookups.take("198.51.100.200", 2000, "keys reported")


# -- 5. file modes --------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_is_0700_and_its_files_0600(tmp_path: Path, sim: Sim) -> None:
    gw = new_gateway(tmp_path, sim)  # `init` ran
    db = gw.data_dir / "nemorouter.db"
    assert _mode(gw.data_dir) == 0o700
    assert _mode(db) == 0o600 and _mode(gw.data_dir / "master.key") == 0o600
    # An existing dir and database left looser (a restore, a copy) are tightened by `serve`.
    os.chmod(gw.data_dir, 0o755)
    os.chmod(db, 0o644)
    gw.start()
    try:
        key = gw.key(gw.account("1.00"))
        assert _chat(gw, key) == 200  # the database was written: -wal and -shm exist
        assert _mode(gw.data_dir) == 0o700 and _mode(db) == 0o600
        for suffix in ("-wal", "-shm"):
            side = Path(str(db) + suffix)
            assert side.exists() and _mode(side) == 0o600, suffix
    finally:
        assert gw.stop() == 0
    log = (gw.data_dir / "gateway.log").read_text()
    assert "tightened to 700" in log and "tightened to 600" in log


# -- 6. /metrics: business series only with the token or an explicit opt-in ---------------------


def _families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_an_open_metrics_endpoint_leaves_money_out(gateway: Gateway) -> None:
    key = gateway.key(gateway.account("1.00"))
    assert _chat(gateway, key) == 200
    answer = httpx.get(f"{gateway.url}/metrics")
    assert answer.status_code == 200  # CONTRACT: open when NEMO_METRICS_TOKEN is unset
    families = _families(answer.text)
    assert "nemo_http_requests_total" in families and "nemo_tokens_total" in families
    assert not [f for f in families if "picousd" in f], families
    # No money, and no account named (a rate-limit label such as "account requests" is neither).
    assert "picousd" not in answer.text and "acct_" not in answer.text


def test_money_on_an_open_metrics_endpoint_is_an_opt_in(tmp_path: Path, sim: Sim) -> None:
    gw = _started(new_gateway(tmp_path, sim), NEMO_METRICS_PUBLIC_MONEY="1")
    try:
        key = gw.key(gw.account("1.00"))
        assert _chat(gw, key) == 200
        text = httpx.get(f"{gw.url}/metrics").text
        assert "nemo_cost_picousd_total" in _families(text)
    finally:
        assert gw.stop() == 0


# -- 7. provider secrets with control characters ----------------------------------------------------

BAD_SECRETS = {
    "CR LF": "sk-probe-{}\r\nX-Injected: 1",
    "LF": "sk-probe-{}\nmore",
    "NUL": "sk-probe-{}\x00tail",
    "tab": "sk-probe-{}\ttail",
    "DEL": "sk-probe-{}\x7ftail",
    "C1": "sk-probe-{}\x85tail",
    "ESC": "\x1bsk-probe-{}",
    "space": "Bearer sk-probe-{}",
    "non-ASCII": "sk-probe-{}é",
}


@pytest.fixture(scope="module")
def probe_provider(gateway: Gateway) -> str:
    name = "probe-" + secrets.token_hex(3)
    created = gateway.admin(
        "POST", "/providers", {"name": name, "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
    )
    assert created.status_code == 201, created.text
    return name


@pytest.mark.parametrize("kind", list(BAD_SECRETS))
def test_a_provider_secret_with_control_characters_is_refused(
    gateway: Gateway, probe_provider: str, kind: str
) -> None:
    secret = BAD_SECRETS[kind].format(secrets.token_hex(8))
    answer = gateway.admin(
        "POST", f"/providers/{probe_provider}/keys", {"secret": secret, "label": "refused"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request"
    assert secret not in answer.text
    assert "refused" not in gateway.admin("GET", f"/providers/{probe_provider}").text  # nothing stored


def test_the_cli_refuses_a_secret_with_control_characters_in_one_line(
    gateway: Gateway, probe_provider: str
) -> None:
    for secret in (
        "sk-probe-" + secrets.token_hex(8) + "\x00x\n",
        "sk-probe-" + secrets.token_hex(8) + "\rx\n",
    ):
        result = gateway.cli(
            "providers", "add-key", probe_provider, "--label", "cli-bad", input=secret, check=False
        )
        _one_error_line(result, "control character")
    env_secret = "sk-probe-" + secrets.token_hex(8) + "\nsecond-line"
    result = subprocess.run(
        [
            *NEMOROUTER,
            "providers",
            "add-key",
            probe_provider,
            "--label",
            "cli-bad",
            "--secret-env",
            "PROBE_SECRET",
        ],
        env={**gateway.env, "PROBE_SECRET": env_secret},
        capture_output=True,
        text=True,
        timeout=60,
    )
    _one_error_line(result, "control character")
    # A trailing newline (what `echo` adds) is fine: stripped, the key is stored.
    good = gateway.cli(
        "providers",
        "add-key",
        probe_provider,
        "--label",
        "cli-good",
        input="sk-probe-ok-" + secrets.token_hex(8) + "\n",
    )
    assert good.returncode == 0
    assert wait_until(lambda: "cli-good" in str(gateway.admin("GET", f"/providers/{probe_provider}").json()))
