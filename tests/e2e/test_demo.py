"""`make run` (= `nemorouter demo`): a ready key on a fresh machine, reused by a second run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx

from conftest import NEMOROUTER, _wait_for_line, free_port, stop


def _lines_until(proc: subprocess.Popen[str], needle: str, timeout: float = 10) -> list[str]:
    """Every stdout line up to the one containing `needle` (read in a thread: never hangs)."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            found.append(line)
            if needle in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found and needle in found[-1], found
    return found


def run_demo(data_dir: Path, port: int, sim_port: int) -> tuple[subprocess.Popen[str], str, str]:
    env = {**os.environ, "NEMO_DATA_DIR": str(data_dir)}
    env.pop("NEMO_ADMIN_TOKEN", None)
    proc = subprocess.Popen(
        [*NEMOROUTER, "demo", "--port", str(port), "--sim-port", str(sim_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(data_dir / f"demo-{port}.log", "w"),  # noqa: SIM115 - scanned for secrets at the end
        text=True,
    )
    key_line = _wait_for_line(proc, "inference key:", 60)
    curl_line = _wait_for_line(proc, "curl -s", 10)
    return proc, key_line.split("inference key:")[1].strip(), curl_line.strip()


def test_demo_prints_a_working_key_and_reuses_it(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    proc, key, curl = run_demo(tmp_path, port, sim_port)
    try:
        assert re.fullmatch(r"sk-nemo-v1-[0-9A-Za-z]{49}", key)
        assert f"http://127.0.0.1:{port}/v1/chat/completions" in curl and key in curl
        body = json.loads(re.search(r"-d '(\{.*\})'", curl).group(1))  # type: ignore[union-attr]
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert reply.status_code == 200, reply.text
        usage = json.loads(reply.text, parse_float=Decimal)["usage"]
        # gpt-4o-mini list price: $0.15 in, $0.60 out per 1M tokens.
        expected = (
            usage["prompt_tokens"] * Decimal("0.15") + usage["completion_tokens"] * Decimal("0.6")
        ) / 10**6
        assert usage["cost"] == expected
        credits = httpx.get(
            f"http://127.0.0.1:{port}/v1/key", headers={"Authorization": f"Bearer {key}"}
        ).json()["data"]
        assert Decimal(str(credits["usage"])) == expected
        check_other_formats(proc, port, key)
    finally:
        assert stop(proc) == 0
    proc, again, _ = run_demo(tmp_path, port, sim_port)
    try:
        assert again == key
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "again"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert reply.status_code == 200
    finally:
        assert stop(proc) == 0
    env = {**os.environ, "NEMO_DATA_DIR": str(tmp_path)}
    accounts = json.loads(
        subprocess.run(
            [*NEMOROUTER, "accounts", "list"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )["data"]
    assert len(accounts) == 1 and Decimal(str(accounts[0]["total_credits"])) == Decimal("5")


def check_other_formats(proc: subprocess.Popen[str], port: int, key: str) -> None:
    """The banner's Claude Code, Codex CLI and anthropic SDK settings, and the simulated
    Anthropic- and Gemini-format models answering through the gateway."""
    base = f"http://127.0.0.1:{port}"
    text = "".join(_lines_until(proc, 'wire_api = "responses"'))
    assert f"ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY={key}" in text
    assert f'base_url = "{base}/v1"' in text and 'env_key = "NEMO_API_KEY"' in text
    assert f'anthropic.Anthropic(base_url="{base}", api_key="{key}")' in text
    listed = {m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]}
    assert {"anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-5", "google/gemini-2.5-flash"} <= listed
    for model in ("anthropic/claude-haiku-4-5", "google/gemini-2.5-flash"):
        reply = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "Hello!"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == model and reply.json()["choices"][0]["message"]["content"]
        assert Decimal(reply.headers["x-nemo-cost"]) > 0
    client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
    for model in ("anthropic/claude-haiku-4-5", "google/gemini-2.5-flash"):
        message = client.messages.create(
            model=model, max_tokens=200, messages=[{"role": "user", "content": "Hello!"}]
        )
        assert message.content[0].type == "text" and message.content[0].text
