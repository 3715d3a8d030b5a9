"""Schemathesis against /openapi.json of a running gateway: for every documented operation, a
bounded number of generated requests (path parameters, bodies; with the right credentials, so
the handlers are reached): never a 5xx, and every 4xx in the contract's error shape.

Its own gateway: the operator API is fuzzed with the operator token, which changes things."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from shapes import assert_error_shape

from conftest import Gateway, Sim, new_gateway

EXAMPLES = 12  # per operation: ~50 operations, well under a minute in all


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("fuzz-openapi"), sim)
    gw.env["NEMO_STRIPE_WEBHOOK_SECRET"] = "whsec_" + "fuzz" * 8  # so the webhook is checked, not 503
    gw.start()
    yield gw
    assert gw.stop() == 0


def credentials(gw: Gateway) -> dict[str, dict[str, str]]:
    account = gw.account("5.00", name="fuzz")
    return {
        "inferenceKey": {"Authorization": f"Bearer {gw.key(account)}"},
        "managementKey": {"Authorization": f"Bearer {gw.management_key(account)}"},
        "operatorToken": {"Authorization": f"Bearer {gw.admin_token}"},
    }


def check(status: int, text: str, path: str, where: str) -> None:
    assert status < 500, f"{where}: {status} {text[:500]}"
    if status >= 400:
        try:
            body: Any = json.loads(text)
        except ValueError:
            raise AssertionError(f"{where}: {status} with a body that is not JSON: {text[:200]!r}") from None
        assert_error_shape(status, body, path, where)


def fuzz(
    base_url: str, operation: Any, headers: dict[str, str], tried: dict[str, int], mode: GenerationMode
) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        resp = case.call(base_url=base_url, headers=headers, timeout=30)
        tried[label] = tried.get(label, 0) + 1
        text = resp.content.decode("utf-8", "replace")
        content_type = " ".join(resp.headers.get("content-type", []))  # a list per header name
        if content_type.startswith("text/html"):  # pages for people
            assert resp.status_code < 500, f"{label} {resp.request.url}: {resp.status_code}"
            return
        check(resp.status_code, text, operation.path, f"{label} {resp.request.url}")

    run()


def test_no_operation_answers_5xx_or_an_error_off_the_contract(fuzzed: Gateway) -> None:
    document = httpx.get(f"{fuzzed.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    headers_of = credentials(fuzzed)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in document["paths"].values())
    tried: dict[str, int] = {}
    for operation in operations:
        security = operation.definition.raw.get("security") or []
        # Credentials of the kind the operation names (none for a kind this test does not know).
        headers = headers_of.get(next(iter(security[0])), {}) if security else {}
        # Valid by the document (the handlers' own checks), then breaking it (wrong types, shapes).
        fuzz(fuzzed.url, operation, headers, tried, GenerationMode.POSITIVE)
        if operation.path_parameters or operation.body:
            try:
                fuzz(fuzzed.url, operation, headers, tried, GenerationMode.NEGATIVE)
            except Unsatisfiable:
                # A public operation whose only input is a free-string path parameter (GET
                # /v1/models/{model_id}) has nothing that can be made invalid; any other must.
                if operation.body or security:
                    raise
    assert len(tried) == len(operations)
    assert fuzzed.verify()["ok"]


def test_unknown_paths_and_methods_answer_in_the_contracts_shape(fuzzed: Gateway) -> None:
    for method, path, status in [
        ("GET", "/nope", 404),
        ("DELETE", "/v1/credits", 405),
        ("PUT", "/admin/v1/accounts", 405),
        ("GET", "/v1/keys/%00", 401),
        ("POST", "/v1/chat/completions/extra", 404),
    ]:
        resp = httpx.request(method, f"{fuzzed.url}{path}")
        assert resp.status_code == status, (method, path, resp.text)
        check(resp.status_code, resp.text, path, f"{method} {path}")
