"""Embeddings through the SDK, auth by key set, and the ``/_sim`` inspection endpoints."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai import OpenAI


def _get(url: str, method: str = "GET") -> tuple[int, Any]:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def test_embeddings_float_and_base64(client: OpenAI) -> None:
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input=["Hello, world!", "abc"], encoding_format="float"
    )
    as_b64 = client.embeddings.create(
        model="text-embedding-3-small", input=["Hello, world!", "abc"]
    )  # SDK: base64
    assert as_float.object == "list" and as_float.model == "text-embedding-3-small"
    assert [d.index for d in as_float.data] == [0, 1]
    for f, b in zip(as_float.data, as_b64.data, strict=True):
        assert len(f.embedding) == 1536 and f.embedding == b.embedding
        assert abs(math.sqrt(sum(x * x for x in f.embedding)) - 1) < 1e-3
    assert as_float.data[0].embedding != as_float.data[1].embedding
    assert as_float.usage.prompt_tokens == 4 + 1 and as_float.usage.total_tokens == 5


def test_embedding_dimensions_tokens_and_errors(client: OpenAI) -> None:
    assert len(client.embeddings.create(model="text-embedding-3-large", input="x").data[0].embedding) == 3072
    assert len(client.embeddings.create(model="other", input="x").data[0].embedding) == 256
    r = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]], dimensions=64)
    assert len(r.data) == 2 and len(r.data[1].embedding) == 64 and r.usage.prompt_tokens == 5
    same = client.embeddings.create(model="text-embedding-3-small", input="x")
    again = client.embeddings.create(model="text-embedding-3-small", input="x")
    assert same.data[0].embedding == again.data[0].embedding
    for bad in ("", [], [""]):
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="text-embedding-3-small", input=bad)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="", input="x")
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="text-embedding-3-small", input="x [sim:status=500]")


def test_requests_are_recorded(sim_url: str) -> None:
    assert _get(f"{sim_url}/_sim/health")[0] == 200
    assert _get(f"{sim_url}/_sim/requests", "DELETE")[0] == 200
    with OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-provider-key", max_retries=0) as c:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with (
        OpenAI(base_url=f"{sim_url}/v1", api_key="sk-nemo-v1-customer", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.embeddings.create(model="text-embedding-3-small", input="x")
    status, records = _get(f"{sim_url}/_sim/requests?limit=5")
    assert status == 200 and len(records) == 2
    first, second = records
    assert first["path"] == "/v1/chat/completions" and first["model"] == "gpt-4o"
    assert first["authorization"] == "Bearer sk-sim-provider-key"
    assert first["headers"]["authorization"] == "Bearer sk-sim-provider-key"
    assert all(k == k.lower() for k in first["headers"]) and first["body_bytes"] > 0
    assert second["path"] == "/v1/embeddings" and second["authorization"] == "Bearer sk-nemo-v1-customer"
    assert _get(f"{sim_url}/_sim/requests?limit=1")[1] == [second]
    _get(f"{sim_url}/_sim/requests", "DELETE")
    assert _get(f"{sim_url}/_sim/requests")[1] == []


def test_explicit_accepted_keys(in_thread_sim: Callable[[set[str] | None], str]) -> None:
    url = in_thread_sim({"provider-secret-1"})
    with OpenAI(base_url=f"{url}/v1", api_key="provider-secret-1", max_retries=0) as good:
        assert good.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
        assert [m.id for m in good.models.list()]
    with (
        OpenAI(base_url=f"{url}/v1", api_key="sk-sim-anything", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(urllib.request.Request(f"{url}/v1/chat/completions", data=b"{}"), timeout=10)
    assert exc.value.code == 401


def test_unknown_path_is_openai_shaped_404(sim_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{sim_url}/v1/nope", timeout=10)
    assert exc.value.code == 404
    assert json.loads(exc.value.read())["error"]["type"] == "invalid_request_error"
