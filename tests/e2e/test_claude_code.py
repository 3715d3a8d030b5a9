"""Claude Code (`claude -p`, npm @anthropic-ai/claude-code pinned in clients/package.json) pointed
at the gateway only through its documented settings, on the simulator's Anthropic-, OpenAI- and
Gemini-format upstreams: it prints the model's answer and exits 0, every request it made is
charged exactly, and the ledger verifies.

The npm package's launcher wants its postinstall step, which we skip (`npm ci --ignore-scripts`);
the platform package it depends on ships the same native binary, which runs as it is.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_messages_current_clients import ALL, three_formats

from conftest import Gateway, Sim
from nemorouter.sim.content import VOCABULARY

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "clients" / "node_modules" / "@anthropic-ai"


def claude_binary() -> Path | None:
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system(), platform.system().lower())
    found = PACKAGES / f"claude-code-{system}-{arch}" / "claude"
    return found if found.is_file() else None


CLAUDE = claude_binary()
if CLAUDE is None:
    if os.environ.get("CI"):
        raise RuntimeError("Claude Code is not installed: run `npm ci --ignore-scripts --prefix clients`")
    pytest.skip(
        "Claude Code is not installed (npm ci --ignore-scripts --prefix clients)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = three_formats(Path(tmp_path_factory.mktemp("claude-code")), sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def run_claude(
    gw: Gateway, key: str, model: str, prompt: str, home: Path
) -> subprocess.CompletedProcess[str]:
    """`claude -p` with only the gateway's address and key, offline and quiet (its documented
    settings: no auto-update, telemetry, error reports or other non-essential traffic)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gw.url,
        "ANTHROPIC_API_KEY": key,
        # Claude Code's background calls (titles, summaries) use its small model: the same one.
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
    }
    assert CLAUDE is not None
    return subprocess.run(
        [str(CLAUDE), "-p", prompt, "--model", model, "--output-format", "json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def generations(gw: Gateway, key: str) -> list[dict[str, object]]:
    found = httpx.get(f"{gw.url}/v1/generations", headers={"Authorization": f"Bearer {key}"})
    assert found.status_code == 200, found.text
    data: list[dict[str, object]] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def assert_charged_exactly(gw: Gateway, key: str, account: str) -> list[dict[str, object]]:
    """Every request Claude Code made succeeded, and their charges are the account's usage."""
    made = generations(gw, key)
    assert made and all(g["status"] == "success" for g in made)
    charged = sum(Decimal(str(g["total_cost"])) for g in made)
    balance = gw.balance(account)
    assert Decimal(str(balance["total_usage"])) == charged > 0
    assert balance["held"] == 0
    assert gw.verify()["ok"] is True
    return made


def answered(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Claude Code's JSON result, after checking it exited 0 with an answer. (The sim keeps no
    copy of bodies this large, 64 KiB and up: what went upstream is seen in Claude Code's
    account of its turns and in our generation records.)"""
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["is_error"] is False and result["result"].strip()
    return result


@pytest.mark.parametrize("model", ALL)
def test_claude_code_answers_through_the_gateway(gw: Gateway, sim: Sim, model: str, tmp_path: Path) -> None:
    """One turn: Claude Code offers its tools; the sim is told to answer with text."""
    account = gw.account("5.00")
    key = gw.key(account)
    marker = f"cc-{model}"
    done = run_claude(
        gw, key, model, f"Say hello to the gateway {marker} [sim: tool=none]", tmp_path / "home"
    )
    text = answered(done)["result"]
    # The sim writes words of its fixed vocabulary: the printed text is its answer, relayed.
    assert set(text.replace(".", " ").split()) <= set(VOCABULARY)
    assert_charged_exactly(gw, key, account)


@pytest.mark.parametrize("model", ALL)
def test_claude_code_runs_a_tool_through_the_gateway(
    gw: Gateway, sim: Sim, model: str, tmp_path: Path
) -> None:
    """Two requests: the sim calls Claude Code's Read tool (on a path the sim makes up), Claude Code runs it and sends the
    result back, and the next answer (text: the last turn is a tool result) is printed."""
    account = gw.account("5.00")
    key = gw.key(account)
    marker = f"cc-tool-{model}"
    done = run_claude(gw, key, model, f"List the files here {marker} [sim: tool=Read]", tmp_path / "home")
    result = answered(done)
    assert result["num_turns"] >= 2  # the tool call, then the answer to its result
    assert set(result["result"].replace(".", " ").split()) <= set(VOCABULARY)
    assert len(assert_charged_exactly(gw, key, account)) >= 2
