"""A customer's `anthropic-beta` header never makes the operator pay more than we charge: the
official `anthropic` SDK -> the real gateway -> the simulator speaking Anthropic's format.

Betas that change what Anthropic bills (the 1M-context beta's long-context rates, fast mode's
six-fold price, server-side work) are left out of the upstream request and named in
`x-nemo-ignored-fields`; the request is answered all the same (Claude Code must keep working),
and the price-neutral betas it sends still reach Anthropic (docs/providers.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway

CLAUDE = "anthropic/claude-sonnet-4-5"
NEUTRAL = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "thinking-token-count-2026-05-13",
]
PRICEY = [
    "context-1m-2025-08-07",
    "fast-mode-2026-02-01",
    "advanced-tool-use-2025-11-20",
    "advisor-tool-2026-03-01",
    "web-search-2025-03-05",
    "files-api-2025-04-14",
    "some-future-beta-2027-01-01",
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(Path(tmp_path_factory.mktemp("betas")), sim)
    gateway.cli("providers", "add", "anth", "--kind", "anthropic", "--base-url", sim.url)
    gateway.cli("providers", "add-key", "anth", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
    gateway.cli("models", "import", "--vendor", "anthropic", "--provider", "anth")
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def upstream_of(sim: Sim, marker: str) -> dict[str, Any]:
    found = [r for r in sim.requests(200) if marker in str(r.get("body")) and r["path"] == "/v1/messages"]
    assert len(found) == 1, found
    return found[0]


def ask(marker: str) -> list[Any]:
    return [{"role": "user", "content": f"Tell me a story {marker}"}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_pricey_betas_never_reach_anthropic_and_the_request_is_answered(
    gw: Gateway, sim: Sim, stream: bool
) -> None:
    account = gw.account("1.00")
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key(account), max_retries=0)
    marker = f"beta-{secrets.token_hex(4)}"
    header = ",".join([*NEUTRAL[:2], *PRICEY, *NEUTRAL[2:]])
    extra: Any = {"extra_headers": {"anthropic-beta": header}, "extra_query": {"beta": "true"}}
    if stream:
        with client.messages.stream(model=CLAUDE, max_tokens=50, messages=ask(marker), **extra) as events:
            message = events.get_final_message()
            ignored = events.response.headers["x-nemo-ignored-fields"]
    else:
        raw = client.messages.with_raw_response.create(
            model=CLAUDE, max_tokens=50, messages=ask(marker), **extra
        )
        message, ignored = raw.parse(), raw.http_response.headers["x-nemo-ignored-fields"]
    assert message.stop_reason == "end_turn" and message.content
    assert ignored.split(",") == [f"anthropic-beta:{b}" for b in PRICEY]
    sent = upstream_of(sim, marker)
    assert sent["headers"]["anthropic-beta"] == ",".join(NEUTRAL)
    assert sent["query"] == ""  # `?beta=true` is the client's, never the upstream's
    assert gw.balance(account)["held"] == 0 and gw.verify()["ok"] is True


def test_only_pricey_betas_sends_no_beta_header(gw: Gateway, sim: Sim) -> None:
    key = gw.key(gw.account("1.00"))
    marker = f"beta-{secrets.token_hex(4)}"
    answer = httpx.post(
        f"{gw.url}/v1/messages?beta=true",
        json={"model": CLAUDE, "max_tokens": 20, "messages": ask(marker)},
        headers={
            "x-api-key": key,
            "anthropic-beta": "context-1m-2025-08-07",
            "anthropic-version": "2023-06-01",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-nemo-ignored-fields"] == "anthropic-beta:context-1m-2025-08-07"
    assert "anthropic-beta" not in upstream_of(sim, marker)["headers"]


def test_beta_lines_sent_apart_are_one_list(gw: Gateway, sim: Sim) -> None:
    """A 1M-context beta on a second header line is seen (and left out), not lost or let through."""
    key = gw.key(gw.account("1.00"))
    marker = f"beta-{secrets.token_hex(4)}"
    answer = httpx.post(
        f"{gw.url}/v1/messages",
        json={"model": CLAUDE, "max_tokens": 20, "messages": ask(marker)},
        headers=[
            ("x-api-key", key),
            ("anthropic-beta", "interleaved-thinking-2025-05-14"),
            ("anthropic-beta", "context-1m-2025-08-07,effort-2025-11-24"),
        ],
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-nemo-ignored-fields"] == "anthropic-beta:context-1m-2025-08-07"
    sent = upstream_of(sim, marker)["headers"]["anthropic-beta"]
    assert sent == "interleaved-thinking-2025-05-14,effort-2025-11-24"


def test_a_beta_that_is_not_a_plain_name_is_left_out_without_an_injected_header(
    gw: Gateway, sim: Sim
) -> None:
    key = gw.key(gw.account("1.00"))
    marker = f"beta-{secrets.token_hex(4)}"
    answer = httpx.post(
        f"{gw.url}/v1/messages",
        json={"model": CLAUDE, "max_tokens": 20, "messages": ask(marker)},
        headers={
            "x-api-key": key,
            "anthropic-beta": "effort-2025-11-24, x-injected: 1 ,\u00e9t\u00e9-2025-01-01".encode("latin-1"),
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-nemo-ignored-fields"] == "..."  # named only when plain
    sent = upstream_of(sim, marker)["headers"]
    assert sent["anthropic-beta"] == "effort-2025-11-24" and "x-injected" not in sent
