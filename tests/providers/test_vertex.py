"""The `vertex` kind's pure parts: where each publisher's request goes, what it carries, and how
Vertex's errors are read (the Gemini and Anthropic mappings themselves have their own tests)."""

from __future__ import annotations

import orjson
import pytest

from nemorouter.providers import vertex
from nemorouter.providers.google_auth import GOOGLE
from nemorouter.providers.registry import KINDS, adapter_for
from nemorouter.providers.types import FailureKind, Upstream

CONFIG = {"project": "nemo-prod-1", "region": "us-east5"}
TOKEN = "ya29.test-token"
BODY = {"model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50}


def upstream(model: str, base: str = "https://us-east5-aiplatform.googleapis.com") -> Upstream:
    return Upstream(model, base, TOKEN, 8192, CONFIG)


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
    ],
)
def test_default_base_url_per_region(region: str, url: str) -> None:
    assert vertex.default_base_url(region) == url


def test_the_kind_is_registered_and_mints_tokens() -> None:
    assert "vertex" in KINDS and adapter_for("vertex") is vertex.ADAPTER
    assert vertex.ADAPTER.minter is vertex.CLAUDE.minter is GOOGLE
    assert not any(adapter_for(k).minter for k in KINDS if k not in ("vertex", "bedrock"))  # type: ignore[union-attr]


def test_gemini_models_go_to_google_publisher_with_the_gemini_body() -> None:
    up = upstream("gemini-2.5-flash")
    adapter = vertex.ADAPTER.for_request(BODY, up)
    assert adapter is vertex.ADAPTER
    whole = adapter.chat_request(BODY, up)
    assert whole.url == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/nemo-prod-1/locations/us-east5"
        "/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert whole.headers == {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    assert orjson.loads(whole.body) == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"maxOutputTokens": 50},
    }
    streamed = adapter.chat_request({**BODY, "stream": True}, up)
    assert streamed.stream and streamed.url.endswith("/gemini-2.5-flash:streamGenerateContent?alt=sse")


def test_claude_models_go_to_anthropic_publisher_without_model_and_with_vertex_version() -> None:
    up = upstream("claude-sonnet-4-5@20250929")
    adapter = vertex.ADAPTER.for_request(BODY, up)
    assert adapter is vertex.CLAUDE
    whole = adapter.chat_request(BODY, up)
    assert whole.url == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/nemo-prod-1/locations/us-east5"
        "/publishers/anthropic/models/claude-sonnet-4-5%4020250929:rawPredict"
    )
    sent = orjson.loads(whole.body)
    assert sent["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent
    assert sent["max_tokens"] == 50 and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    ]
    assert whole.headers["Authorization"] == f"Bearer {TOKEN}" and "x-api-key" not in whole.headers
    assert "anthropic-version" not in whole.headers
    streamed = adapter.chat_request({**BODY, "stream": True}, up)
    assert streamed.stream and streamed.url.endswith(":streamRawPredict")
    assert orjson.loads(streamed.body)["stream"] is True


def test_project_and_region_cannot_escape_the_path() -> None:
    up = Upstream("gemini-2.5-flash", "https://x", TOKEN, 100, {"project": "a/../b", "region": "r?x=1"})
    assert "/projects/a%2F..%2Fb/locations/r%3Fx%3D1/" in vertex.gemini_request(BODY, up).url


def google_error(code: int, status: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": "m", "status": status}})


def test_a_refused_token_is_not_held_against_the_service_account() -> None:
    for error in (vertex.gemini_error, vertex.claude_error):
        failure = error(401, google_error(401, "UNAUTHENTICATED"), None)
        assert failure.kind is FailureKind.AUTH and failure.retryable and not failure.key_rejected


def test_errors_in_either_shape_are_classified() -> None:
    assert (
        vertex.gemini_error(429, google_error(429, "RESOURCE_EXHAUSTED"), 3).kind is FailureKind.RATE_LIMITED
    )
    assert (
        vertex.gemini_error(403, google_error(403, "PERMISSION_DENIED"), None).kind is FailureKind.FORBIDDEN
    )
    assert (
        vertex.claude_error(429, google_error(429, "RESOURCE_EXHAUSTED"), None).kind
        is FailureKind.RATE_LIMITED
    )
    overloaded = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert vertex.claude_error(529, overloaded, None).kind is FailureKind.OVERLOADED
    bad = orjson.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": "no"}})
    invalid = vertex.claude_error(400, bad, None)
    assert invalid.kind is FailureKind.INVALID and invalid.message == "no"
    assert vertex.claude_error(502, b"<html>bad gateway</html>", None).kind is FailureKind.SERVER
