"""`make run`: set up (or reuse) a demo on the built-in simulator, then serve."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from nemorouter.service.container import Services, initialize
from nemorouter.service.keyformat import hash_key

DEMO_ACCOUNT = "demo"
DEMO_CREDIT_KEY = "demo-initial-credits"


def start_sim(port: int) -> subprocess.Popen[bytes] | None:
    """Start the simulator unless one already answers on `port`."""
    if _sim_alive(port):
        return None
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemorouter", "sim", "--port", str(port)], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _sim_alive(port):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"the simulator did not start on port {port}")


def _sim_alive(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/health", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _sim_providers(sim_port: int) -> list[tuple[str, str, str, str]]:
    """The simulator in each of its wire formats: (provider name, kind, base URL, catalog vendor)."""
    root = f"http://127.0.0.1:{sim_port}"
    return [
        ("sim", "openai", f"{root}/v1", "openai"),
        ("sim-anthropic", "anthropic", root, "anthropic"),
        ("sim-gemini", "gemini", root, "google"),
    ]


async def prepare(services: Services, sim_port: int) -> tuple[str, str | None]:
    """Idempotent demo setup; returns the demo inference key and a new admin token (or None)."""
    _, _, admin_token = await initialize(services)
    store, admin = services.store, services.admin
    for name, kind, base_url, vendor in _sim_providers(sim_port):
        if await store.get_provider(name) is None:
            await admin.create_provider({"name": name, "kind": kind, "base_url": base_url})
            await admin.add_provider_key(
                name, {"secret": "sk-sim-" + secrets.token_urlsafe(24), "label": "demo"}
            )
        await admin.import_models(vendor, name)
    account = next((a for a in await store.list_accounts() if a.name == DEMO_ACCOUNT), None)
    if account is None:
        account = await admin.create_account({"name": DEMO_ACCOUNT, "email": "demo@example.com"})
    await admin.add_credit(
        account.id, {"amount": "5.00", "reason": "demo credits", "idempotency_key": DEMO_CREDIT_KEY}
    )
    return await _demo_key(services, account.id), admin_token


async def _demo_key(services: Services, account_id: str) -> str:
    """Reuse the key kept in the data dir (mode 0600) while it is live, else make a new one."""
    path: Path = services.settings.data_dir / "demo.key"
    if path.exists():
        secret = path.read_text().strip()
        found = await services.store.find_key(hash_key(secret))
        if found is not None and found[0].revoked_at is None and not found[0].disabled:
            return secret
    secret, _ = await services.admin.create_key(account_id, {"name": "demo"})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


def banner(key: str, host: str, port: int, admin_token: str | None) -> str:
    base = f"http://{host}:{port}"
    lines = [
        "",
        "NemoRouter is ready (simulated providers; the demo account holds $5.00 of credits).",
        f"  inference key: {key}",
    ]
    if admin_token:
        lines.append(f"  operator token (shown once, only its hash is kept): {admin_token}")
    lines.append(
        f"  web console: {base}/console/ (operator: the operator token; customers: `nemorouter accounts invite`)"
    )
    lines += [
        "  try it:",
        f"    curl -s {base}/v1/chat/completions -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}\'',
        f"  models: {base}/v1/models (openai/*, anthropic/* and google/*, each simulated in its own wire format)",
        "  the anthropic SDK:",
        f'    anthropic.Anthropic(base_url="{base}", api_key="{key}")'
        '.messages.create(model="anthropic/claude-haiku-4-5", max_tokens=200, messages=[...])',
        "  Claude Code:",
        f"    ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY={key} ANTHROPIC_MODEL=anthropic/claude-sonnet-4-5"
        " ANTHROPIC_DEFAULT_HAIKU_MODEL=anthropic/claude-haiku-4-5 claude",
        "  Codex CLI (~/.codex/config.toml, then: NEMO_API_KEY=<the inference key> codex):",
        '    model = "openai/gpt-4o-mini"',
        '    model_provider = "nemorouter"',
        "    [model_providers.nemorouter]",
        '    name = "NemoRouter"',
        f'    base_url = "{base}/v1"',
        '    env_key = "NEMO_API_KEY"',
        '    wire_api = "responses"',
        "",
    ]
    return "\n".join(lines)
