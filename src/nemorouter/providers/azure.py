"""Azure OpenAI (kind `azure-openai`): OpenAI's wire format at deployment URLs.

Azure addresses a deployment, not a model: `{base_url}/openai/deployments/{deployment}/...`
with a required `api-version` query parameter, and authenticates with an `api-key` header
(learn.microsoft.com, Azure OpenAI REST reference). The deployment name is the
deployment's upstream model; `config.api_version` overrides the pinned version.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from nemorouter.providers import openai_wire
from nemorouter.providers.adapter import Adapter
from nemorouter.providers.types import Upstream, UpstreamRequest

API_VERSION = "2024-10-21"


def _azure(request: UpstreamRequest, upstream: Upstream, path: str) -> UpstreamRequest:
    version = str(upstream.config.get("api_version") or API_VERSION)
    url = (
        f"{upstream.base_url.rstrip('/')}/openai/deployments/{quote(upstream.model, safe='')}{path}"
        f"?api-version={quote(version, safe='')}"
    )
    return replace(request, url=url, headers={"api-key": upstream.secret, "Content-Type": "application/json"})


def chat_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    return _azure(openai_wire.chat_request(body, upstream), upstream, "/chat/completions")


def embeddings_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    return _azure(openai_wire.embeddings_request(body, upstream), upstream, "/embeddings")


ADAPTER = Adapter(
    chat_request=chat_request,
    chat_response=openai_wire.chat_response,
    stream_decoder=openai_wire.stream_decoder,
    error_from_response=openai_wire.error_from_response,
    embeddings_request=embeddings_request,
    embeddings_response=openai_wire.embeddings_response,
)
