"""The contract's error shape, checked on every refusal the fuzzers provoke."""

from __future__ import annotations

from typing import Any

MESSAGES = "/v1/messages"  # Anthropic's shape there, with our `code` and `nemo_type` kept
ANTHROPIC_SHAPED = (MESSAGES, "/v1/messages/count_tokens")


def assert_error_shape(status: int, body: Any, path: str, where: str) -> None:
    assert isinstance(body, dict), f"{where}: error body is not a JSON object: {body!r}"
    error = body.get("error")
    assert isinstance(error, dict), f"{where}: no `error` object: {body!r}"
    if path in ANTHROPIC_SHAPED:
        assert body.get("type") == "error", f"{where}: {body!r}"
        assert isinstance(error.get("nemo_type"), str) and error["nemo_type"], f"{where}: {body!r}"
    else:
        assert set(body) == {"error"}, f"{where}: {body!r}"
    assert error.get("code") == status, f"{where}: code {error.get('code')} != status {status}"
    assert isinstance(error.get("type"), str) and error["type"], f"{where}: {body!r}"
    assert isinstance(error.get("message"), str) and error["message"], f"{where}: {body!r}"
