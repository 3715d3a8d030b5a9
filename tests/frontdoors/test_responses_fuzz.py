"""Hypothesis-made Responses bodies and chat chunks: the door answers a clear 400 or a translation,
and the stream converter turns any chunk into valid events, never an unexpected exception."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.responses.request import translate
from nemorouter.frontdoors.responses.stream import ResponsesStream

EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
FIELDS = [
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "reasoning", "text",
    "max_output_tokens", "temperature", "include", "store", "stream", "metadata", "truncation",
]  # fmt: skip
ITEM_KEYS = [
    "type",
    "role",
    "content",
    "call_id",
    "name",
    "arguments",
    "output",
    "namespace",
    "encrypted_content",
]
ITEM = st.dictionaries(
    st.sampled_from(ITEM_KEYS), JSON | st.sampled_from(["message", "function_call", "user"])
)
BODY = st.fixed_dictionaries(
    {"model": st.just("m"), "input": st.lists(ITEM, min_size=1, max_size=3) | st.text(max_size=5)},
    optional={name: JSON for name in FIELDS if name not in ("model", "input")},
)
DELTA_KEYS = ["content", "reasoning_content", "thinking_blocks", "tool_calls", "refusal", "role"]
DELTA = st.dictionaries(
    st.sampled_from(DELTA_KEYS),
    JSON | st.lists(st.dictionaries(st.sampled_from(["index", "id", "function"]), JSON)),
)
CHOICE = st.fixed_dictionaries({"index": st.just(0), "delta": DELTA}, optional={"finish_reason": JSON})
CHUNK = st.fixed_dictionaries({}, optional={"choices": st.lists(CHOICE, max_size=2) | JSON, "usage": JSON})


@settings(max_examples=400, deadline=None)
@given(BODY)
def test_any_body_is_translated_or_refused_with_a_400(body: dict[str, Any]) -> None:
    try:
        translate(body)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message


@settings(max_examples=300, deadline=None)
@given(st.lists(CHUNK, max_size=5))
def test_any_chunks_become_valid_events(chunks: list[dict[str, Any]]) -> None:
    converter = ResponsesStream(translate({"model": "m", "input": "x"}), "gen-f", 0)
    events = [e for c in chunks for e in converter.feed(c)] + converter.end()
    for number, (_, data) in enumerate(events):
        assert data["sequence_number"] == number
        EVENT.validate_python(data)
