"""The Vercel AI SDK's default OpenAI provider (`ai` + `@ai-sdk/openai`, pinned in
clients/package.json) against a running gateway on the simulator's OpenAI-, Anthropic- and
Gemini-format upstreams. `createOpenAI({baseURL, apiKey})(model)` calls the Responses API; the SDK
checks every response and stream chunk against its own schemas (clients/vercel-ai.mjs reports
whatever fails them). generateText and streamText answer with the sim's text, tool calls run to
the answer, and every request is charged its usage at the listed prices, with the ledger verified.

A later turn built from the SDK's response messages refers to the earlier answer by item id
(`item_reference`) unless the call says `store: false`: the gateway keeps no responses, so that is
the documented 400 naming the alternative, and with `store: false` the turn works.
"""

from __future__ import annotations

import json
import os
import shutil
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
SCRIPT = ROOT / "clients" / "vercel-ai.mjs"
NODE = shutil.which("node")

if NODE is None or not (ROOT / "clients" / "node_modules" / "@ai-sdk" / "openai").is_dir():
    if os.environ.get("CI"):
        raise RuntimeError(
            "the Vercel AI SDK is not installed: run `npm ci --ignore-scripts --prefix clients`"
        )
    pytest.skip(
        "node or the Vercel AI SDK is not installed (npm ci --ignore-scripts --prefix clients)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = three_formats(Path(tmp_path_factory.mktemp("vercel-ai")), sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def run_sdk(gw: Gateway, key: str, model: str, case: str, prompt: str) -> dict[str, Any]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(SCRIPT), f"{gw.url}/v1", key, model, case, prompt],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_NO_WARNINGS": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def generation(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    data: dict[str, Any] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def assert_answered(call: dict[str, Any], requests: int) -> None:
    """A call the SDK accepted in full: no schema or API error, no warning, the sim's words."""
    assert call["errors"] == [] and call["warnings"] == [], call
    assert call["finishReason"] == "stop"
    assert call["text"].strip() and set(call["text"].split()) <= set(VOCABULARY)
    assert len(call["responseIds"]) == requests


def assert_charged_exactly(
    gw: Gateway, key: str, account: str, model: str, calls: list[dict[str, Any]]
) -> None:
    """Each request the SDK made is charged its usage at the listed prices, the usage the SDK
    counted is the usage billed, and the account's spend is the sum."""
    total = Decimal(0)
    for call in calls:
        made = [generation(gw, key, request_id) for request_id in call["responseIds"]]
        for found in made:
            assert found["status"] == "success" and found["model"] == model
            assert found["total_cost"] == gw.list_price(key, model, found["tokens"]) > 0
            total += found["total_cost"]
        assert call["usage"]["inputTokens"] == sum(g["tokens"]["prompt"] for g in made)
        assert call["usage"]["outputTokens"] == sum(g["tokens"]["completion"] for g in made)
    balance = gw.balance(account)
    assert Decimal(str(balance["total_usage"])) == total and balance["held"] == 0
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize("model", ALL)
def test_generate_and_stream_text(gw: Gateway, model: str) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    out = run_sdk(gw, key, model, "text", "Say hello to the gateway")
    generated, streamed = out["generate"], out["stream"]
    assert_answered(generated, 1)
    assert_answered(streamed, 1)
    assert streamed["parts"].count("text-delta") > 1 and streamed["parts"][-1] == "finish"
    assert_charged_exactly(gw, key, account, model, [generated, streamed])


@pytest.mark.parametrize("model", ALL)
def test_a_tool_call_runs_to_the_answer(gw: Gateway, sim: Sim, model: str) -> None:
    """The sim calls the offered tool; the SDK runs it and sends its result back (a
    function_call and function_call_output item), and the next answer is text."""
    account = gw.account("1.00")
    key = gw.key(account)
    out = run_sdk(gw, key, model, "tools", f"The weather please vercel-{model}")
    for call in (out["generate"], out["stream"]):
        assert_answered(call, 2)
        (result,) = call["toolResults"]
        assert result.startswith("sunny in ")
        # The tool's output reached the upstream in the request after the call.
        assert any(result in json.dumps(r.get("body")) for r in sim.requests())
    assert_charged_exactly(gw, key, account, model, [out["generate"], out["stream"]])


@pytest.mark.parametrize("model", ALL)
def test_a_second_turn_needs_store_false(gw: Gateway, model: str) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    out = run_sdk(gw, key, model, "conversation", "Say hello to the gateway")
    assert_answered(out["first"], 1)
    assert_answered(out["stateless"], 1)
    stored = out["stored"]
    assert stored["status"] == 400
    error = json.loads(stored["body"])["error"]
    assert error["type"] == "invalid_request" and "store: false" in error["message"]
    assert_charged_exactly(gw, key, account, model, [out["first"], out["stateless"]])
