"""The front door of rerank (`POST /v1/rerank`), in the shape Cohere and Jina share (and LiteLLM
and OpenRouter follow): `{model, query, documents, top_n?, return_documents?}` ->
`{id, model, results: [{index, relevance_score, document?: {text}}], usage}`.

`query` is a non-empty string; `documents` 1 to 1,000 non-empty strings or `{"text": ...}`
objects (read as their text). Voyage's `top_k` is taken as `top_n`. Every other field passes
through for the provider to judge, and counts toward the hold (providers/bounds.py).
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.json_body import json_object
from nemorouter.frontdoors.openai_chat import model_ids, provider_prefs
from nemorouter.providers.canonical import RerankRequest
from nemorouter.service.gateway import Gateway, JsonReply, StreamReply
from nemorouter.store.records import ApiKey

MAX_DOCUMENTS = 1000  # Voyage's and Cohere's own limit per request


def _text(document: Any) -> str | None:
    if isinstance(document, dict) and set(document) == {"text"}:
        document = document["text"]
    return document if isinstance(document, str) and document else None


def parse_rerank(raw: bytes) -> RerankRequest:
    body = json_object(raw)
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise InvalidRequest("`query` must be a non-empty string")
    documents = body.get("documents")
    if not isinstance(documents, list) or not 0 < len(documents) <= MAX_DOCUMENTS:
        raise InvalidRequest(f"`documents` must be a list of 1 to {MAX_DOCUMENTS} documents")
    texts = [_text(document) for document in documents]
    if None in texts:
        raise InvalidRequest('each of `documents` must be a non-empty string or {"text": "..."}')
    body["documents"] = texts
    if "top_k" in body and "top_n" not in body:
        body["top_n"] = body.pop("top_k")
    top_n = body.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise InvalidRequest("`top_n` must be a positive integer")
    if not isinstance(body.get("return_documents", False), bool):
        raise InvalidRequest("`return_documents` must be a boolean")
    return RerankRequest(body, model_ids(body), prefs=provider_prefs(body))


async def rerank(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply | StreamReply:
    return await gateway.rerank(key, parse_rerank(raw))


RERANK = FrontDoor("/v1/rerank", rerank)
