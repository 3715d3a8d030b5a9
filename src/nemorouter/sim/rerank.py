"""Deterministic rerank, in three providers' shapes: ``POST /v1/rerank`` as Jina answers
(`top_n`; `results` with `document: {text}`), ``POST /cohere/v2/rerank`` as Cohere does (the
same, but usage as ``meta.billed_units.search_units``) and ``POST /voyage/v1/rerank`` as Voyage
does (`top_k`; `data` with `document` as a string). Each is strict about its own field for the count
of results, so a gateway that sends the other shape's is caught.

A document's score is the share of the query's words it contains (plus a small hash-drawn
part below 0.001 that breaks ties), so rankings are meaningful and repeatable. Usage follows
Voyage's documented formula for both: every document is read with the query, so
``total_tokens = sum(tokens(query) + tokens(document))``. Cohere's search units follow its
pricing page: a search is one query with up to 100 documents, and a document longer than 510
tokens with the query counts as one document per chunk of that size.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from typing import Any

from nemorouter.sim.tokens import count_text_tokens

_WORD = re.compile(r"\w+")


class RerankError(Exception):
    """A request the provider would refuse with 400."""


def input_strings(body: dict[str, Any]) -> list[str]:
    """The texts where in-band directives may hide: the query and the documents."""
    documents = body.get("documents")
    texts = [body.get("query"), *(documents if isinstance(documents, list) else [])]
    return [t for t in texts if isinstance(t, str)]


def _score(query: str, document: str) -> float:
    words = set(_WORD.findall(query.lower()))
    found = set(_WORD.findall(document.lower()))
    share = len(words & found) / len(words) if words else 0.0
    tie = int.from_bytes(hashlib.sha256(f"{query}\x00{document}".encode()).digest()[:2], "big") / 65536
    return round(share * 0.99 + tie / 1000, 6)


def search_units(query: str, documents: list[str]) -> int:
    """Cohere's billed search units for a query over these documents."""
    room = 510 - count_text_tokens(query)
    chunks = 0
    for doc in documents:
        tokens = count_text_tokens(doc)
        chunks += max(1, math.ceil(tokens / room) if room > 0 else tokens)
    return math.ceil(chunks / 100)


def rerank_body(body: dict[str, Any], voyage: bool, cohere: bool = False) -> dict[str, Any]:
    """The provider's answer to a rerank body; raises ``RerankError``."""
    model, query, documents = body.get("model"), body.get("query"), body.get("documents")
    if not isinstance(model, str) or not model:
        raise RerankError("'model' is required.")
    if not isinstance(query, str) or not query:
        raise RerankError("'query' must be a non-empty string.")
    if (
        not isinstance(documents, list)
        or not documents
        or not all(isinstance(d, str) and d for d in documents)
    ):
        raise RerankError("'documents' must be a non-empty list of non-empty strings.")
    own, other = ("top_k", "top_n") if voyage else ("top_n", "top_k")
    if other in body:
        raise RerankError(f"unknown field '{other}'; did you mean '{own}'?")
    limit = body.get(own)
    if limit is not None and (type(limit) is not int or limit < 1):
        raise RerankError(f"'{own}' must be a positive integer.")
    ranked = sorted(
        ((i, _score(query, doc)) for i, doc in enumerate(documents)), key=lambda pair: (-pair[1], pair[0])
    )[: limit or len(documents)]
    tokens = sum(count_text_tokens(query) + count_text_tokens(doc) for doc in documents)
    results = []
    for index, score in ranked:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if body.get("return_documents"):
            item["document"] = documents[index] if voyage else {"text": documents[index]}
        results.append(item)
    if voyage:
        return {"object": "list", "data": results, "model": model, "usage": {"total_tokens": tokens}}
    if cohere:
        billed = {"search_units": search_units(query, documents)}
        return {
            "id": secrets.token_hex(8),
            "results": results,
            "meta": {"api_version": {"version": "2"}, "billed_units": billed},
        }
    return {"id": secrets.token_hex(8), "model": model, "results": results, "usage": {"total_tokens": tokens}}
