"""Hypothesis-made bodies for POST /v1/responses: random JSON and bytes, and near-valid Responses
bodies (a valid request with a field dropped, retyped or added, or random input items). Never a
5xx; every refusal in the contract's (OpenAI's) error shape; nothing charged for a refused
request, nothing left held, and `ledger verify` clean (the same rules as chat and messages,
`test_fuzz_inference_bodies.py`, whose `Run` sends and keeps count)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_inference_bodies import EXAMPLES, Run, fuzz_settings, json_values

from conftest import Gateway

RESPONSES = "/v1/responses"
VALID = {"model": "openai/gpt-4o-mini", "input": "hi", "max_output_tokens": 5}
FIELDS = [
    "model", "input", "instructions", "max_output_tokens", "stream", "temperature", "top_p", "tools",
    "tool_choice", "parallel_tool_calls", "reasoning", "text", "include", "store", "metadata",
    "previous_response_id", "truncation", "prompt_cache_key", "background",
]  # fmt: skip
ITEM_TYPES = ["message", "function_call", "function_call_output", "reasoning", "item_reference", "x"]
ITEM_FIELDS = [
    "type",
    "role",
    "content",
    "call_id",
    "name",
    "arguments",
    "output",
    "namespace",
    "encrypted_content",
]
PART_TYPES = ["input_text", "output_text", "input_image", "input_file", "refusal", "x"]


@st.composite
def near_valid(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "set", "item", "part", "extra"]))
        if action == "drop":
            body.pop(draw(st.sampled_from(sorted(body) or ["model"])), None)
        elif action == "set":
            body[draw(st.sampled_from(FIELDS))] = draw(json_values)
        elif action == "item":
            item = draw(st.dictionaries(st.sampled_from(ITEM_FIELDS), json_values, max_size=4))
            item["type"] = draw(st.sampled_from(ITEM_TYPES))
            body["input"] = [{"role": "user", "content": "hi"}, item]
        elif action == "part":
            part = draw(
                st.dictionaries(st.sampled_from(["text", "image_url", "file_data", "detail"]), json_values)
            )
            part["type"] = draw(st.sampled_from(PART_TYPES))
            body["input"] = [
                {"role": draw(st.sampled_from(["user", "assistant", "system"])), "content": [part]}
            ]
        else:
            body[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    return body


@pytest.fixture(scope="module")
def run(gateway: Gateway) -> Run:
    return Run(gateway)


def test_random_json_and_bytes_are_refused_in_shape(run: Run) -> None:
    @fuzz_settings()
    @given(body=json_values | st.binary(max_size=64))
    def check(body: Any) -> None:
        run.send(RESPONSES, body)

    check()


def test_near_valid_bodies_never_fail_the_server(run: Run) -> None:
    @fuzz_settings()
    @given(body=near_valid())
    def check(body: Any) -> None:
        run.send(RESPONSES, body)

    check()


def test_refused_requests_cost_nothing(run: Run, gateway: Gateway) -> None:
    """Runs after the fuzzing above (same module, in order)."""
    assert run.refused >= EXAMPLES and run.answered  # the fuzzing ran: most refused, some answered
    charged = run.charged()
    assert set(run.answered) <= set(charged)
    assert all(cost == 0 for gen_id, cost in charged.items() if gen_id not in run.answered)
    balance = gateway.balance(run.account)
    assert Decimal(str(balance["total_usage"])) == sum(charged[g] for g in run.answered)
    assert balance["held"] == 0
    report = gateway.verify()
    assert (report["ok"], report["problems"]) == (True, []), report
