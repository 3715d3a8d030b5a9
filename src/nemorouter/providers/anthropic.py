"""The adapter for the Anthropic Messages API (kind `anthropic`), pinned to anthropic-version 2023-06-01.

Pinned because each version changes the request shape (SDK 2.14 already speaks 2026-10-21);
the mapping is written for exactly one. Request mapping: `anthropic_request`; answers, usage
and errors: `anthropic_response`; streams: `anthropic_stream`.
"""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.providers import anthropic_passthrough
from nemorouter.providers.adapter import Adapter
from nemorouter.providers.anthropic_request import messages_body
from nemorouter.providers.anthropic_response import chat_response, error_from_response, parse_usage
from nemorouter.providers.anthropic_stream import stream_decoder
from nemorouter.providers.types import Upstream, UpstreamRequest

API_VERSION = "2023-06-01"

__all__ = ["ADAPTER", "API_VERSION", "chat_request", "parse_usage"]


def chat_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    """POST {base_url}/v1/messages; base_url as in the official SDK (https://api.anthropic.com)."""
    out = messages_body(anthropic_passthrough.derived_body(body), upstream.model, upstream.max_output)
    anthropic_passthrough.apply(body, out)
    headers = {
        "x-api-key": upstream.secret,
        "anthropic-version": API_VERSION,
        "content-type": "application/json",
    }
    betas = anthropic_passthrough.beta_header(body)
    if betas is not None:
        headers["anthropic-beta"] = betas
    url = upstream.base_url.rstrip("/") + "/v1/messages"
    return UpstreamRequest(url, headers, orjson.dumps(out), bool(out.get("stream")))


ADAPTER = Adapter(
    chat_request=chat_request,
    chat_response=chat_response,
    stream_decoder=stream_decoder,
    error_from_response=error_from_response,
)
