"""`/v1/messages/count_tokens` is free for the customer but spends the operator's counting quota
at the provider: the official `anthropic` SDK -> the real gateway -> the simulator's Anthropic and
Gemini count endpoints (`count_status`, `count_latency_ms`: docs/simulator.md).

One key cannot turn it into a flood upstream: the key's requests per minute apply as to any
request; at most one upstream call per request, never retried; at most
NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE upstream calls per key; and a provider that will not count
(429, 5xx, too slow) is answered by counting here, never by failing. `x-nemo-token-count` says
which source answered.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway
from nemorouter.frontdoors.anthropic_messages.count import COUNT_TIMEOUTS, _count_timeouts
from nemorouter.settings import Timeouts

CLAUDE = "anthropic/claude-sonnet-4-5"
FLASH = "google/gemini-2.5-flash"
COUNT_PATHS = ("/v1/messages/count_tokens", ":countTokens")
BUDGET = 3
PROVIDER_TIMEOUT = 1  # seconds: the Anthropic provider's own timeouts, so a slow count is quick to see


def started(base: Path, sim: Sim, per_minute: str) -> Gateway:
    gateway = new_gateway(base, sim)
    gateway.env["NEMO_COUNT_TOKENS_UPSTREAM_PER_MINUTE"] = per_minute
    gateway.start()
    timeouts = {"first_byte": PROVIDER_TIMEOUT, "total": PROVIDER_TIMEOUT}
    for name, kind, secret, vendor, config in (
        ("anth", "anthropic", SIM_PROVIDER_SECRET, "anthropic", {"timeouts": timeouts}),
        ("gem", "gemini", "AIzaSy-count-" + secrets.token_hex(4), "google", {}),
    ):
        made = gateway.admin(
            "POST", "/providers", {"name": name, "kind": kind, "base_url": sim.url, "config": config}
        )
        assert made.status_code == 201, made.text
        keyed = gateway.admin("POST", f"/providers/{name}/keys", {"secret": secret, "label": "main"})
        assert keyed.status_code == 201, keyed.text
        imported = gateway.admin("POST", "/models/import", {"vendor": vendor, "provider": name})
        assert imported.status_code in (200, 201), imported.text
    return gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = started(tmp_path_factory.mktemp("count-abuse"), sim, str(BUDGET))
    yield gateway
    assert gateway.stop() == 0


def client(gw: Gateway, **key_fields: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.url, api_key=gw.key(gw.account("1.00"), **key_fields), max_retries=0
    )


def count(sdk: anthropic.Anthropic, model: str, text: str) -> tuple[int, str]:
    raw = sdk.messages.with_raw_response.count_tokens(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return raw.parse().input_tokens, raw.http_response.headers["x-nemo-token-count"]


def counted_upstream(sim: Sim, marker: str) -> int:
    """How many count calls carrying `marker` reached the simulator."""
    return sum(
        1 for r in sim.requests(1000) if r["path"].endswith(COUNT_PATHS) and marker in str(r.get("body"))
    )


@pytest.mark.parametrize("model", [CLAUDE, FLASH])
def test_the_keys_requests_per_minute_apply_before_anything_goes_upstream(
    gw: Gateway, sim: Sim, model: str
) -> None:
    sdk = client(gw, rpm=2)
    marker = f"rpm-{secrets.token_hex(4)}"
    for _ in range(2):
        assert count(sdk, model, f"Count me {marker}")[1] == "upstream"
    for _ in range(3):
        with pytest.raises(anthropic.RateLimitError):
            count(sdk, model, f"Count me {marker}")
    assert counted_upstream(sim, marker) == 2


@pytest.mark.parametrize(
    ("model", "status"),
    [(CLAUDE, 429), (CLAUDE, 500), (CLAUDE, 529), (FLASH, 429), (FLASH, 503)],
)
def test_a_provider_that_will_not_count_is_asked_once_and_counted_here(
    gw: Gateway, sim: Sim, model: str, status: int
) -> None:
    sdk = client(gw)
    marker = f"refuse-{secrets.token_hex(4)}"
    honest, source = count(sdk, model, f"Count me {marker}")
    assert source == "upstream"
    refused, source = count(sdk, model, f"Count me {marker} [sim:count_status={status},retry_after=1]")
    assert source in ("tokenizer", "bound")
    assert refused >= honest  # the offline count or the bound never undercounts the prompt
    assert counted_upstream(sim, marker) == 2  # one call each: no retry, no second provider
    # Counting is a courtesy: the provider's refusal to count cools nothing down.
    message = sdk.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": marker}])
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_a_slow_count_is_abandoned_and_counted_here(gw: Gateway, sim: Sim) -> None:
    sdk = client(gw)
    marker = f"slow-{secrets.token_hex(4)}"
    began = time.monotonic()
    _, source = count(sdk, CLAUDE, f"Count me {marker} [sim:count_latency_ms=5000]")
    assert source == "bound" and time.monotonic() - began < PROVIDER_TIMEOUT + 2
    assert counted_upstream(sim, marker) == 1


def test_count_timeouts_are_capped_whatever_the_provider_allows() -> None:
    generous = Timeouts(connect=60, first_byte=600, idle=600, total=3600)
    assert _count_timeouts(generous) == COUNT_TIMEOUTS
    assert _count_timeouts(None) == COUNT_TIMEOUTS
    assert _count_timeouts(Timeouts(connect=1, first_byte=2, idle=3, total=4)) == Timeouts(1, 2, 3, 4)


@pytest.mark.parametrize("model", [CLAUDE, FLASH])
def test_upstream_counts_per_key_are_budgeted(gw: Gateway, sim: Sim, model: str) -> None:
    greedy, other = client(gw), client(gw)
    marker = f"budget-{secrets.token_hex(4)}"
    sources = [count(greedy, model, f"Count me {marker} {n}")[1] for n in range(BUDGET + 3)]
    assert sources[:BUDGET] == ["upstream"] * BUDGET
    assert set(sources[BUDGET:]) <= {"tokenizer", "bound"}
    assert counted_upstream(sim, marker) == BUDGET
    assert count(other, model, f"Count me {marker} other")[1] == "upstream"  # per key


def test_a_budget_of_zero_never_counts_upstream(tmp_path: Path, sim: Sim) -> None:
    gateway = started(tmp_path, sim, "0")
    try:
        sdk = client(gateway)
        marker = f"zero-{secrets.token_hex(4)}"
        for model in (CLAUDE, FLASH):
            assert count(sdk, model, f"Count me {marker}")[1] in ("tokenizer", "bound")
        assert counted_upstream(sim, marker) == 0
    finally:
        assert gateway.stop() == 0
