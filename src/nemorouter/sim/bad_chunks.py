"""Malformed stream chunks a misbehaving OpenAI-format provider sends (directive ``bad_chunk``).

Each shape is one extra ``data:`` event, valid JSON but wrong in one field, sent right after the
first content chunk (after the role chunk when there is no content); the stream then goes on
normally, usage included. A provider's chunk is untrusted input: the gateway must skip or
tolerate what it cannot read, finish the answer and charge exactly the usage reported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BAD_CHUNKS"]


def _choice(delta: Any, finish: Any = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]


# shape name -> the fields that replace a well-formed chunk's `choices` and `usage`
BAD_CHUNKS: dict[str, dict[str, Any]] = {
    "choices_string": {"choices": "oops"},
    "choices_number": {"choices": 7},
    "choices_object": {"choices": {"index": 0, "delta": {"content": " stray"}}},
    "choice_null": {"choices": [None]},
    "delta_null": {"choices": _choice(None)},
    "delta_string": {"choices": _choice("oops")},
    "content_number": {"choices": _choice({"content": 5})},
    "tool_calls_number": {"choices": _choice({"tool_calls": 5})},
    "tool_call_no_function": {
        "choices": _choice({"tool_calls": [{"index": 3, "id": "call_x", "type": "function"}]})
    },
    "tool_call_index_list": {
        "choices": _choice({"tool_calls": [{"index": [1], "function": {"name": "f", "arguments": "{}"}}]})
    },
    "finish_number": {"choices": _choice({}, 5)},
    "usage_types": {
        "choices": [],
        "usage": {
            "prompt_tokens": "5",
            "completion_tokens": 1.5,
            "total_tokens": None,
            "prompt_tokens_details": "x",
        },
    },
    "usage_string": {"choices": [], "usage": "lots"},
}
