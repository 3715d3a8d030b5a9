"""Hypothesis-made request bodies for POST /v1/chat/completions and /v1/messages: random JSON
(and bytes that are not JSON), and near-valid bodies (a valid request with one field dropped,
retyped or added). Never a 5xx; every refusal in the contract's shape; and nothing is charged for
a refused request: at the end the account's usage is exactly the sum of the answered requests'
costs, nothing is held, and `ledger verify` is clean."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapes import assert_error_shape

from conftest import Gateway

EXAMPLES = 100  # per strategy and endpoint

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
VALID: dict[str, dict[str, Any]] = {
    CHAT: {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    },
    MESSAGES: {
        "model": "openai/gpt-4o-mini",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    },
}
# The fields each API knows, so near-valid bodies hit the parsers' real branches.
FIELDS = {
    CHAT: [
        "model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options",
        "temperature", "top_p", "n", "stop", "tools", "tool_choice", "response_format", "models",
        "provider", "logprobs", "top_logprobs", "seed", "user", "reasoning_effort", "modalities",
    ],
    MESSAGES: [
        "model", "messages", "max_tokens", "system", "stream", "stop_sequences", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "thinking", "metadata", "service_tier",
    ],
}  # fmt: skip
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id", "cache_control"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["user", "assistant", "system", "tool", "text", "image_url", "auto", "none", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def near_valid(draw: st.DrawFn, path: str) -> Any:
    body = json.loads(json.dumps(VALID[path]))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "set", "message", "content part", "extra"]))
        if action == "drop":
            body.pop(draw(st.sampled_from(sorted(body) or ["model"])), None)
        elif action == "set":
            body[draw(st.sampled_from(FIELDS[path]))] = draw(json_values)
        elif action == "message" and isinstance(body.get("messages"), list) and body["messages"]:
            message = body["messages"][0]
            if isinstance(message, dict):
                message[draw(st.sampled_from(MESSAGE_FIELDS))] = draw(json_values)
        elif action == "content part":
            part = draw(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "image_url", "image", "tool_use", "tool_result", "x"])},
                    optional={"text": json_values, "image_url": json_values, "source": json_values},
                )
            )
            body["messages"] = [{"role": draw(st.sampled_from(["user", "assistant"])), "content": [part]}]
        else:
            body[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    return body


class Run:
    """Sends bodies with one key; remembers the requests that were answered (and so charged)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.account = gw.account("5.00", name="fuzz-bodies")
        self.key = gw.key(self.account)
        self.mgmt = gw.management_key(self.account)
        self.client = httpx.Client(base_url=gw.url, timeout=60)
        self.answered: list[str] = []
        self.refused = 0

    def send(self, path: str, body: Any) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = self.client.post(
            path,
            content=content,
            headers={"Authorization": f"Bearer {self.key}", "content-type": "application/json"},
        )
        where = f"{path} {content[:300]!r}"
        assert resp.status_code < 500, f"{where}: {resp.status_code} {resp.text[:500]}"
        assert resp.headers.get("x-nemo-request-id"), where
        if resp.status_code == 200:
            self.answered.append(resp.headers["x-nemo-request-id"])
            return
        self.refused += 1
        assert_error_shape(resp.status_code, resp.json(), path, where)

    def charged(self) -> dict[str, Decimal]:
        """Every request record of the account: its id and total cost."""
        found = self.client.get(
            "/v1/generations", params={"limit": 500}, headers={"Authorization": f"Bearer {self.mgmt}"}
        )
        assert found.status_code == 200, found.text
        return {g["id"]: Decimal(str(g["total_cost"])) for g in found.json()["data"]}


@pytest.fixture(scope="module")
def run(gateway: Gateway) -> Run:
    return Run(gateway)


def fuzz_settings() -> Any:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_random_json_and_bytes_are_refused_in_shape(run: Run, path: str) -> None:
    @fuzz_settings()
    @given(body=json_values | st.binary(max_size=64))
    def check(body: Any) -> None:
        run.send(path, body)

    check()


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_near_valid_bodies_never_fail_the_server(run: Run, path: str) -> None:
    @fuzz_settings()
    @given(body=near_valid(path))
    def check(body: Any) -> None:
        run.send(path, body)

    check()


# Bodies the fuzzing found answered 500 once; each must stay a 400 in shape.
REGRESSIONS = [
    (CHAT, {**VALID[CHAT], "messages": [{"role": [], "content": "hi"}]}),  # unhashable role
    (CHAT, {**VALID[CHAT], "messages": [{"role": {"a": 1}, "content": "hi"}]}),
]


@pytest.mark.parametrize(("path", "body"), REGRESSIONS)
def test_bodies_that_once_failed_the_server(run: Run, path: str, body: Any) -> None:
    before = run.refused
    run.send(path, body)
    assert run.refused == before + 1


def test_refused_requests_cost_nothing(run: Run, gateway: Gateway) -> None:
    """Runs after the fuzzing above (same module, in order)."""
    assert run.refused >= EXAMPLES  # the fuzzing ran, and most of it was refused
    charged = run.charged()
    assert set(run.answered) <= set(charged)
    assert all(cost == 0 for gen_id, cost in charged.items() if gen_id not in run.answered)
    balance = gateway.balance(run.account)
    assert Decimal(str(balance["total_usage"])) == sum(charged[g] for g in run.answered)
    assert Decimal(str(balance["balance"])) == Decimal("5") - Decimal(str(balance["total_usage"]))
    assert balance["held"] == 0
    report = gateway.verify()
    assert (report["ok"], report["problems"]) == (True, []), report
