"""The Responses door's request building and its `x-nemo-omitted` header value."""

from __future__ import annotations

import orjson
import pytest

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.responses.serve import chat_request, omitted_header


def test_the_canonical_request_carries_the_model_stream_and_output_limit() -> None:
    body = {"model": "anthropic/claude-sonnet-4-5", "input": "hi", "stream": True, "max_output_tokens": 77}
    request, canonical = chat_request(orjson.dumps(body))
    assert canonical.model_ids == ["anthropic/claude-sonnet-4-5"]
    assert canonical.stream is True and canonical.max_output == 77 and canonical.n == 1
    assert canonical.body is request.chat and canonical.body["max_completion_tokens"] == 77
    _, plain = chat_request(orjson.dumps({"model": "m", "input": "hi"}))
    assert plain.stream is False and plain.max_output is None


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{not json"])
def test_a_body_that_is_not_a_json_object_is_a_400(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        chat_request(raw)


def test_the_header_names_plain_identifiers_and_nothing_that_could_break_it() -> None:
    assert omitted_header(["tools.web_search", "truncation"]) == "tools.web_search, truncation"
    hostile = omitted_header(["tools.web_search", "x\r\nset-cookie: a=b", "é", "tools.web_search"])
    assert hostile == "tools.web_search, ?"
    many = omitted_header([f"f{i}" for i in range(40)])
    assert many.endswith(", f31, ...") and "f32" not in many
