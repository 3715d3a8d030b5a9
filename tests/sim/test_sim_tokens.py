"""The token-counting contract, in process: exact examples and the tokens <= bytes bound."""

from __future__ import annotations

import random

from nemorouter.sim.content import VOCABULARY, ToolSpec, apply_stop, tool_reply
from nemorouter.sim.faults import collect_faults
from nemorouter.sim.tokens import (
    count_chat_prompt_tokens,
    count_text_tokens,
    token_pieces,
    truncate_to_tokens,
)


def test_examples() -> None:
    assert count_text_tokens("") == 0
    assert count_text_tokens("   \n\t") == 0
    assert count_text_tokens("Hello, world!") == 4
    assert count_text_tokens("naïve café") == 2
    assert count_text_tokens("日本語 テキスト") == 2
    assert count_text_tokens("👍🏽!") == 3
    assert count_text_tokens("snake_case x2") == 2


def test_tokens_never_exceed_utf8_bytes() -> None:
    rng = random.Random(7)
    pool = "ab Z9_ \n\t.,!?{}\"'é日本👍🏽\u200b\u00a0-"
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        assert count_text_tokens(text) <= len(text.encode())
        body = {"messages": [{"role": "user", "content": text, "name": text}]}
        assert count_chat_prompt_tokens(body) <= 3 + 3 + 2 * len(text.encode())


def test_vocabulary_words_are_single_tokens() -> None:
    assert len(VOCABULARY) == 64 and len(set(VOCABULARY)) == 64
    assert all(count_text_tokens(w) == 1 and w.islower() for w in VOCABULARY)


def test_truncate_and_pieces() -> None:
    text = '{"a": "b c", "d": 1.5}'
    total = count_text_tokens(text)
    for n in range(total + 2):
        assert count_text_tokens(truncate_to_tokens(text, n)) == min(n, total)
    assert "".join(token_pieces(text)) == text and len(token_pieces(text)) == total
    assert token_pieces("alpha beta gamma") == ["alpha", " beta", " gamma"]


def test_stop_cuts_before_word_holding_the_stop() -> None:
    words = ["alpha", "beta", "gamma"]
    assert apply_stop(words, ["gam"]) == (["alpha", "beta"], True)
    assert apply_stop(words, ["eta"]) == (["alpha"], True)
    assert apply_stop(words, ["zzz", ""]) == (words, False)


def test_directive_merging() -> None:
    faults = collect_faults(
        "tokens=2; STATUS=503", ["x [sim:tokens=9,latency_ms=5] [sim:bogus=1,cut_after=x]"]
    )
    assert faults.tokens == 2 and faults.status == 503 and faults.latency_ms == 5 and faults.cut_after is None
    assert collect_faults(None, ["[sim:status=200]"]).status is None


def test_tool_arguments_always_an_object_and_capped() -> None:
    digest = bytes(32)
    for params in (None, {}, {"type": "object"}, {"type": "object", "properties": {}}):
        reply = tool_reply(digest, ToolSpec("ping", params), None)
        assert reply.tool_arguments == "{}" and reply.tokens == 1 + 2 and reply.finish_reason == "tool_calls"
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 3}}}
    full = tool_reply(digest, ToolSpec("f", schema), None)
    assert full.tool_arguments == '{"n": 3}' and full.tokens == 1 + 7
    cut = tool_reply(digest, ToolSpec("f", schema), 4)
    assert cut.tool_arguments == '{"n' and cut.tokens == 4 and cut.finish_reason == "length"
