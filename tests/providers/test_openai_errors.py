"""OpenAI-wire error classes: only a 401 is evidence against the vault key; a 403 is the request's."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from nemorouter.providers.openai_wire import error_from_response


def _body(code: str | None, message: str = "the message") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}})


@pytest.mark.parametrize(
    ("status", "code", "kind", "retryable", "key_rejected"),
    [
        (401, "invalid_api_key", "auth", True, True),
        (403, None, "forbidden", False, False),  # a file, a model or a region this request may not use
        (403, "unsupported_country_region_territory", "forbidden", False, False),
        (429, "rate_limit_exceeded", "rate_limited", True, False),
        (400, None, "invalid", False, False),
        (500, None, "server", True, False),
    ],
)
def test_only_a_401_rejects_the_key(
    status: int, code: str | None, kind: str, retryable: bool, key_rejected: bool
) -> None:
    failure = error_from_response(status, _body(code), None)
    assert (failure.kind, failure.retryable, failure.key_rejected) == (kind, retryable, key_rejected)
    assert failure.status == status and failure.message == "the message"
    assert failure.against_key is True


def test_a_failure_not_held_against_the_key_rejects_nothing() -> None:
    refused = error_from_response(401, _body("invalid_api_key"), None)
    assert refused.blames_key and refused.key_rejected
    spared = replace(refused, against_key=False)
    assert spared.blames_key and not spared.key_rejected
