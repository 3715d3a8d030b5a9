"""A provider's stream chunk is untrusted input: the official SDKs (anthropic's Messages stream,
openai's chat and Responses streams) -> the real gateway -> the simulator's OpenAI-format stream
with one chunk malformed in one field (`[sim:bad_chunk=SHAPE]`, sim/bad_chunks.py).

Whatever the shape, the malformed chunk is skipped or tolerated, the stream ends as that format
ends a finished answer, and the request is charged exactly the usage the provider reported:
the record's tokens are the sim's, the account's usage is the record's cost to the pico-dollar,
no hold is left and the ledger verifies.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from conftest import Gateway, Sim, new_gateway
from nemorouter.sim.bad_chunks import BAD_CHUNKS

GPT = "openai/gpt-4o-mini"
WORDS = 6  # the sim writes exactly this many words (tokens) for every request here
SHAPES = sorted(BAD_CHUNKS)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(Path(tmp_path_factory.mktemp("bad-chunks")), sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def prompt(shape: str) -> str:
    return f"Tell me a story [sim:tokens={WORDS},bad_chunk={shape}] {secrets.token_hex(4)}"


def record(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    data: dict[str, Any] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def assert_settled_exactly(gw: Gateway, account: str, key: str, request_id: str) -> None:
    made = record(gw, key, request_id)
    assert made["status"] == "success" and made["cancelled"] is False, made
    assert made["tokens"]["completion"] == WORDS and made["tokens"]["prompt"] > 0
    balance = json.loads(gw.admin("GET", f"/accounts/{account}").text, parse_float=Decimal)["data"]
    assert balance["held"] == 0
    assert Decimal(str(balance["total_usage"])) == Decimal(str(made["total_cost"])) > 0
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize("shape", SHAPES)
def test_messages_stream_skips_a_malformed_chunk_and_settles_exactly(gw: Gateway, shape: str) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)
    with client.messages.stream(
        model=GPT, max_tokens=100, messages=[{"role": "user", "content": prompt(shape)}]
    ) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
        request_id = stream.response.headers["x-nemo-request-id"]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "error" not in kinds
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == WORDS
    text = "".join(b.text for b in message.content if b.type == "text")
    assert len(text.split()) == WORDS  # the sim's words, none lost and none made up
    for block in message.content:
        assert block.type in ("text", "tool_use")
        if block.type == "tool_use":
            assert block.name  # Anthropic's tool_use always names its tool
    assert_settled_exactly(gw, account, key, request_id)


@pytest.mark.parametrize("shape", SHAPES)
def test_chat_stream_skips_a_malformed_chunk_and_settles_exactly(gw: Gateway, shape: str) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    with gw.openai(key, timeout=30) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=GPT,
            max_tokens=100,
            messages=[{"role": "user", "content": prompt(shape)}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == WORDS
    assert_settled_exactly(gw, account, key, raw.headers["x-nemo-request-id"])


@pytest.mark.parametrize("shape", SHAPES)
def test_responses_stream_skips_a_malformed_chunk_and_settles_exactly(gw: Gateway, shape: str) -> None:
    account = gw.account("1.00")
    key = gw.key(account)
    with gw.openai(key, timeout=30) as client:
        raw = client.responses.with_raw_response.create(
            model=GPT, max_output_tokens=100, input=prompt(shape), stream=True
        )
        events = list(raw.parse())
    assert events[-1].type == "response.completed", [e.type for e in events]
    usage = events[-1].response.usage
    assert usage is not None and usage.output_tokens == WORDS
    assert_settled_exactly(gw, account, key, raw.headers["x-nemo-request-id"])
