"""Rerank on the OpenAI-wire kinds: `POST {base_url}/rerank` with a bearer key, in the shape the
provider's vendor row names (providers/vendors.py, `rerank_shape`).

- `cohere` (the default, Jina's too: api.jina.ai/v1/rerank): `top_n`, an answer's `results`
  with `document: {text}`, `usage.total_tokens`.
- `voyage` (docs.voyageai.com/reference/reranker-api): `top_k`, an answer's `data` with
  `document` as a string, `usage.total_tokens`.

Both answers become the front door's shape: `results` of `{index, relevance_score,
document?: {text}}`, ordered as the provider ordered them. Cohere's own API (vendor `cohere`,
`POST https://api.cohere.com/v2/rerank`) reports no tokens but `meta.billed_units.search_units`:
the units its models are priced in (money/prices.py, unit "search").
"""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.providers.counts import count, lenient
from nemorouter.providers.openai_wire import GATEWAY_FIELDS
from nemorouter.providers.types import Completion, Upstream, UpstreamRequest
from nemorouter.providers.vendors import rerank_shape


def rerank_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    out["model"] = upstream.model
    if rerank_shape(upstream.config.get("vendor")) == "voyage" and "top_n" in out:
        out["top_k"] = out.pop("top_n")
    url = upstream.base_url.rstrip("/") + "/rerank"
    headers = {"Authorization": f"Bearer {upstream.secret}", "Content-Type": "application/json"}
    return UpstreamRequest(url, headers, orjson.dumps(out))


def _result(item: Any) -> dict[str, Any]:
    """One ranked document, checked: an index and a numeric score (the provider is untrusted)."""
    index, score = item.get("index"), item.get("relevance_score")
    if type(index) is not int or index < 0 or type(score) not in (int, float):
        raise ValueError("a rerank result without an index and a score")
    out: dict[str, Any] = {"index": index, "relevance_score": score}
    document = item.get("document")
    if isinstance(document, str):
        out["document"] = {"text": document}
    elif isinstance(document, dict) and isinstance(document.get("text"), str):
        out["document"] = {"text": document["text"]}
    return out


def rerank_response(data: Any) -> Completion:
    if not isinstance(data, dict):
        raise ValueError("upstream answered 200 without rerank results")
    found = data.get("results", data.get("data"))
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise ValueError("upstream answered 200 without rerank results")
    raw = data.get("usage")
    meta = data.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    if not isinstance(raw, dict) and isinstance(billed, dict):  # Cohere's: search units
        raw = billed
    usage = _usage(raw) if isinstance(raw, dict) else None
    body = {"results": [_result(item) for item in found]}
    return Completion(
        body=body, usage=usage, finish_reason=None, raw_usage=raw if isinstance(raw, dict) else None
    )


@lenient
def _usage(raw: dict[str, Any]) -> Usage:
    """`{total_tokens}` (Voyage, Jina), or Cohere's `{search_units}`: named "search" by the request."""
    return Usage(prompt_tokens=count(raw.get("total_tokens")), units=count(raw.get("search_units")))
