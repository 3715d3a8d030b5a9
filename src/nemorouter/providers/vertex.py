"""Google Vertex AI (kind `vertex`): Gemini and Claude models of one GCP project and region.

Only the URL and the auth differ from the `gemini` and `anthropic` kinds; the bodies, answers,
usage and streams are theirs (`gemini_request`/`gemini_response`, `anthropic_*`):

- the publisher is chosen by the deployment's upstream model id: `claude-*` is Anthropic's
  (`publishers/anthropic/models/{model}:rawPredict` / `:streamRawPredict`), anything else
  Google's (`publishers/google/models/{model}:generateContent` / `:streamGenerateContent?alt=sse`),
  the two families Vertex serves under the model ids its docs use;
- the base URL is `https://{region}-aiplatform.googleapis.com` (`https://aiplatform.googleapis.com`
  for `global`, `https://aiplatform.{us,eu}.rep.googleapis.com` for the multi-regions), as in
  google-genai's and anthropic's Vertex clients; the API version is `v1`, the GA one (google-genai
  defaults to `v1beta1` on Vertex; the generateContent body is the same in both);
- the vault secret is a service-account JSON; the engine exchanges it for an OAuth access token
  before each attempt (`Adapter.minter`: providers/google_auth.py, engine/minted.py), so `upstream.secret` is
  that bearer token by the time these pure functions see it;
- Claude's body is the Messages body without `model` (it is in the URL) and with
  `anthropic_version: "vertex-2023-10-16"` in the body instead of the header (anthropic's
  `lib/vertex/_client.py`, `_prepare_options`); betas still travel in `anthropic-beta`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from nemorouter.providers import anthropic_passthrough
from nemorouter.providers.adapter import Adapter
from nemorouter.providers.anthropic_request import messages_body
from nemorouter.providers.anthropic_response import chat_response as claude_response
from nemorouter.providers.anthropic_response import failure as claude_failure
from nemorouter.providers.anthropic_stream import stream_decoder as claude_stream
from nemorouter.providers.gemini import error_from_body as google_failure
from nemorouter.providers.gemini import stream_decoder as gemini_stream
from nemorouter.providers.gemini_request import gemini_body
from nemorouter.providers.gemini_response import chat_response as gemini_response
from nemorouter.providers.google_auth import GOOGLE
from nemorouter.providers.types import Failure, FailureKind, Upstream, UpstreamRequest

API_VERSION = "v1"
ANTHROPIC_VERSION = "vertex-2023-10-16"
MULTI_REGIONS = frozenset({"us", "eu"})

__all__ = ["ADAPTER", "ANTHROPIC_VERSION", "API_VERSION", "default_base_url", "publisher"]


def default_base_url(region: str) -> str:
    """Vertex's endpoint for a region, as google-genai and anthropic's Vertex client build it."""
    if region == "global":
        return "https://aiplatform.googleapis.com"
    if region in MULTI_REGIONS:
        return f"https://aiplatform.{region}.rep.googleapis.com"
    return f"https://{region}-aiplatform.googleapis.com"


def publisher(model: str) -> str:
    """`anthropic` for Claude model ids (Vertex names them `claude-...`), else `google`."""
    return "anthropic" if model.startswith("claude-") else "google"


def model_url(upstream: Upstream, action: str) -> str:
    config: Mapping[str, Any] = upstream.config
    project = quote(str(config.get("project") or ""), safe="")
    region = quote(str(config.get("region") or ""), safe="")
    model = quote(upstream.model, safe="")
    return (
        f"{upstream.base_url.rstrip('/')}/{API_VERSION}/projects/{project}/locations/{region}"
        f"/publishers/{publisher(upstream.model)}/models/{model}:{action}"
    )


def _headers(upstream: Upstream) -> dict[str, str]:
    return {"Authorization": f"Bearer {upstream.secret}", "Content-Type": "application/json"}


def gemini_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    stream = bool(body.get("stream"))
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    payload = orjson.dumps(gemini_body(body, upstream.max_output))
    return UpstreamRequest(model_url(upstream, action), _headers(upstream), payload, stream)


def claude_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = messages_body(anthropic_passthrough.derived_body(body), upstream.model, upstream.max_output)
    anthropic_passthrough.apply(body, out)
    out.pop("model", None)  # Vertex takes the model from the URL and refuses it in the body
    out = {"anthropic_version": ANTHROPIC_VERSION, **out}
    stream = bool(out.get("stream"))
    headers = _headers(upstream)
    betas = anthropic_passthrough.beta_header(body)
    if betas is not None:
        headers["anthropic-beta"] = betas
    action = "streamRawPredict" if stream else "rawPredict"
    return UpstreamRequest(model_url(upstream, action), headers, orjson.dumps(out), stream)


def _parsed(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _token_refused(failure: Failure) -> Failure:
    """Vertex refusing our access token (401 UNAUTHENTICATED) is about the token, not the service
    account: the token endpoint accepted the account's key moments ago. Not held against the key
    (no quarantine); the engine drops the cached token and the next attempt mints a fresh one."""
    if failure.kind is not FailureKind.AUTH:
        return failure
    return Failure(FailureKind.AUTH, failure.status, failure.message, retryable=True, against_key=False)


def gemini_error(status: int, body: bytes, retry_after: int | None) -> Failure:
    return _token_refused(google_failure(status, _parsed(body), retry_after))


def claude_error(status: int, body: bytes, retry_after: int | None) -> Failure:
    """Vertex's own refusals (auth, quota, routing) come in Google's error shape, the model's in
    Anthropic's: each is read by its own rule."""
    parsed = _parsed(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    google_shape = isinstance(error, dict) and "status" in error and parsed.get("type") != "error"
    failure = (
        google_failure(status, parsed, retry_after)
        if google_shape
        else claude_failure(status, parsed, retry_after)
    )
    return _token_refused(failure)


CLAUDE = Adapter(
    chat_request=claude_request,
    chat_response=claude_response,
    stream_decoder=claude_stream,
    error_from_response=claude_error,
    minter=GOOGLE,
)


def _select(body: dict[str, Any], upstream: Upstream) -> Adapter | None:
    return CLAUDE if publisher(upstream.model) == "anthropic" else None


ADAPTER = Adapter(
    chat_request=gemini_request,
    chat_response=gemini_response,
    stream_decoder=gemini_stream,
    error_from_response=gemini_error,
    select=_select,
    minter=GOOGLE,
)
