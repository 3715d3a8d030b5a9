"""A misbehaving provider on demand: usage reports beyond the limit sent, impossible counts, and the
key and permission errors, in all three wire formats, stream and not, read raw (the way a gateway
reads them) and through the official SDKs where they can parse the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
from openai import OpenAI

from nemorouter.sim.bad_chunks import BAD_CHUNKS
from nemorouter.sim.faults import HUGE_COUNT, Faults

FORMATS = ("openai", "anthropic", "gemini")
CAP = 5  # the output limit sent; the sim always generates exactly this many words below
ABSURD = 10**30


@dataclass
class Report:
    """What one response said: its usage counts (as parsed JSON values) and the text generated."""

    prompt: Any
    output: Any
    total: Any
    text: str
    start_prompt: Any = None  # Anthropic's message_start usage (stream only)
    start_output: Any = None
    running: list[Any] | None = None  # Gemini's running candidate counts (stream only)


def _openai(url: str, prompt: str, stream: bool) -> Report:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": CAP,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-sim-t"})
    assert r.status_code == 200, r.text
    if not stream:
        data = json.loads(r.content)
        u = data["usage"]
        return Report(
            u["prompt_tokens"],
            u["completion_tokens"],
            u["total_tokens"],
            data["choices"][0]["message"]["content"],
        )
    chunks = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: {")]
    assert r.text.rstrip().endswith("data: [DONE]")
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usage) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return Report(usage[0]["prompt_tokens"], usage[0]["completion_tokens"], usage[0]["total_tokens"], text)


def _anthropic(url: str, prompt: str, stream: bool) -> Report:
    body = {"model": "claude-sonnet-5", "max_tokens": CAP, "messages": [{"role": "user", "content": prompt}]}
    headers = {"x-api-key": "sk-sim-t", "anthropic-version": "2023-06-01"}
    r = httpx.post(f"{url}/v1/messages", json={**body, "stream": stream}, headers=headers)
    assert r.status_code == 200, r.text
    if not stream:
        data = json.loads(r.content)
        u = data["usage"]
        return Report(u["input_tokens"], u["output_tokens"], None, data["content"][0]["text"])
    events = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: ")]
    start = events[0]["message"]["usage"]
    final = next(e for e in events if e["type"] == "message_delta")["usage"]
    assert events[-1]["type"] == "message_stop"
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    return Report(
        final["input_tokens"],
        final["output_tokens"],
        None,
        text,
        start["input_tokens"],
        start["output_tokens"],
    )


def _gemini(url: str, prompt: str, stream: bool) -> Report:
    body = {"contents": [{"parts": [{"text": prompt}]}], "generationConfig": {"maxOutputTokens": CAP}}
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    r = httpx.post(
        f"{url}/v1beta/models/gemini-2.5-flash:{method}", json=body, headers={"x-goog-api-key": "sk-sim-t"}
    )
    assert r.status_code == 200, r.text
    if not stream:
        data = json.loads(r.content)
        u = data["usageMetadata"]
        text = data["candidates"][0]["content"]["parts"][0]["text"]
        return Report(u["promptTokenCount"], u.get("candidatesTokenCount"), u["totalTokenCount"], text)
    events = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: ")]
    final = events[-1]["usageMetadata"]
    text = "".join(p.get("text", "") for e in events for p in e["candidates"][0]["content"].get("parts", []))
    running = [e["usageMetadata"]["candidatesTokenCount"] for e in events[:-1]]
    return Report(
        final["promptTokenCount"],
        final.get("candidatesTokenCount"),
        final["totalTokenCount"],
        text,
        running=running,
    )


ASK = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}


def ask(url: str, fmt: str, stream: bool, directive: str) -> Report:
    return ASK[fmt](url, f"[sim:tokens=50,{directive}] Say something long.", stream)


def _honest(url: str, fmt: str, stream: bool) -> Report:
    # the same prompt length as the faulty requests below: "usage_scale=1" changes nothing
    # (the directive text changes the reply's seed, so the words differ, never their number)
    return ask(url, fmt, stream, "usage_scale=1")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_usage_scale_reports_ten_times_what_the_limit_allowed(sim_url: str, fmt: str, stream: bool) -> None:
    honest = _honest(sim_url, fmt, stream)
    assert honest.output == CAP and len(honest.text.split()) == CAP
    lied = ask(sim_url, fmt, stream, "usage_scale=10")
    assert lied.output == 10 * CAP
    assert len(lied.text.split()) == CAP  # generated only what the limit allowed
    assert lied.prompt == honest.prompt
    if lied.total is not None:
        assert lied.total == honest.total + 9 * CAP
    if fmt == "anthropic" and stream:
        assert (lied.start_prompt, lied.start_output) == (honest.start_prompt, 10)
    if fmt == "gemini" and stream:
        assert honest.running == list(range(1, CAP + 1))
        assert lied.running == [10 * n for n in range(1, CAP + 1)]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_report_exact_counts_even_past_64_bits(sim_url: str, fmt: str, stream: bool) -> None:
    lied = ask(sim_url, fmt, stream, f"report_output={ABSURD},report_prompt=-7")
    assert (lied.prompt, lied.output) == (-7, ABSURD)
    assert len(lied.text.split()) == CAP
    if lied.total is not None:
        assert lied.total == ABSURD - 7
    if fmt == "anthropic" and stream:
        assert (lied.start_prompt, lied.start_output) == (-7, ABSURD)
    ten_million = ask(sim_url, fmt, stream, "report_output=10000000")
    assert ten_million.output == 10_000_000


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("how", "expected"),
    [("negative", -CAP), ("float", CAP + 0.5), ("string", str(CAP)), ("huge", HUGE_COUNT + CAP)],
)
def test_bad_usage_spoils_the_output_count(
    sim_url: str, fmt: str, stream: bool, how: str, expected: Any
) -> None:
    honest = _honest(sim_url, fmt, stream)
    lied = ask(sim_url, fmt, stream, f"bad_usage={how}")
    assert lied.output == expected and type(lied.output) is type(expected)
    assert lied.prompt == honest.prompt
    if lied.total is not None:  # a string cannot be summed: the honest total stays
        assert lied.total == (honest.total if how == "string" else honest.prompt + expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_prompt_spoils_the_prompt_count(sim_url: str, fmt: str) -> None:
    honest = _honest(sim_url, fmt, False)
    lied = ask(sim_url, fmt, False, "bad_prompt=huge")
    assert lied.prompt == honest.prompt + HUGE_COUNT and lied.output == CAP
    assert ask(sim_url, fmt, False, "bad_prompt=negative").prompt == -honest.prompt


def test_sdks_parse_the_inflated_reports(sim_url: str) -> None:
    """What a gateway built on the SDKs would see: the same numbers, not a parse failure."""
    with OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-t", max_retries=0, timeout=10) as client:
        done = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "[sim:report_output=10000000] hi"}],
            max_tokens=10,
        )
    assert done.usage is not None and done.usage.completion_tokens == 10_000_000
    with anthropic.Anthropic(base_url=sim_url, api_key="sk-sim-t", max_retries=0, timeout=10) as claude:
        message = claude.messages.create(
            model="claude-sonnet-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "[sim:usage_scale=10,tokens=50] hi"}],
        )
    assert message.usage.output_tokens == 100 and message.stop_reason == "max_tokens"


# -- key and permission errors in each provider's own shape ---------------------------------------


def _post(url: str, fmt: str, directive: str) -> httpx.Response:
    text = f"[sim:{directive}] hi"
    if fmt == "openai":
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
        return httpx.post(
            f"{url}/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-sim-t"}
        )
    if fmt == "anthropic":
        body = {"model": "claude-sonnet-5", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
        headers = {"x-api-key": "sk-sim-t", "anthropic-version": "2023-06-01"}
        return httpx.post(f"{url}/v1/messages", json=body, headers=headers)
    body = {"contents": [{"parts": [{"text": text}]}]}
    return httpx.post(
        f"{url}/v1beta/models/gemini-2.5-flash:generateContent",
        json=body,
        headers={"x-goog-api-key": "sk-sim-t"},
    )


@pytest.mark.parametrize(
    ("fmt", "directive", "status", "shape"),
    [
        ("openai", "status=401", 401, {"type": "invalid_request_error", "code": "invalid_api_key"}),
        ("openai", "bad_key=1", 401, {"type": "invalid_request_error", "code": "invalid_api_key"}),
        (
            "openai",
            "status=403",
            403,
            {"type": "request_forbidden", "code": "unsupported_country_region_territory"},
        ),
        ("anthropic", "status=401", 401, {"type": "authentication_error"}),
        ("anthropic", "bad_key=1", 401, {"type": "authentication_error"}),
        ("anthropic", "status=403", 403, {"type": "permission_error"}),
        ("gemini", "status=401", 401, {"code": 401, "status": "UNAUTHENTICATED"}),
        ("gemini", "status=403", 403, {"code": 403, "status": "PERMISSION_DENIED"}),
        ("gemini", "bad_key=1", 400, {"code": 400, "status": "INVALID_ARGUMENT"}),
    ],
)
def test_key_and_permission_errors(
    sim_url: str, fmt: str, directive: str, status: int, shape: dict[str, Any]
) -> None:
    r = _post(sim_url, fmt, directive)
    assert r.status_code == status
    body = r.json()
    if fmt == "anthropic":
        assert body["type"] == "error" and body["error"]["message"]
    error = body["error"]
    assert {k: error[k] for k in shape} == shape and error["message"]
    if fmt == "gemini" and directive == "bad_key=1":  # Google's invalid key: 400 with this reason
        assert error["details"][0]["reason"] == "API_KEY_INVALID"


def test_sdks_map_403_to_permission_denied(sim_url: str) -> None:
    import openai

    with (
        OpenAI(base_url=f"{sim_url}/v1", api_key="sk-sim-t", max_retries=0, timeout=10) as client,
        pytest.raises(openai.PermissionDeniedError),
    ):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "[sim:status=403] hi"}]
        )
    with (
        anthropic.Anthropic(base_url=sim_url, api_key="sk-sim-t", max_retries=0, timeout=10) as claude,
        pytest.raises(anthropic.PermissionDeniedError),
    ):
        claude.messages.create(
            model="claude-sonnet-5",
            max_tokens=5,
            messages=[{"role": "user", "content": "[sim:status=403] hi"}],
        )


# -- the parser -------------------------------------------------------------------------------------


def test_parser_reads_signed_huge_and_word_directives() -> None:
    faults = Faults.from_directives(
        {"report_output": str(ABSURD), "report_prompt": "-3", "bad_usage": "FLOAT", "usage_scale": "10"}
    )
    assert (faults.report_output, faults.report_prompt, faults.bad_usage, faults.usage_scale) == (
        ABSURD,
        -3,
        "float",
        10,
    )
    assert faults.output_count(7) == ABSURD + 0.5 and faults.prompt_count(100) == -3
    ignored = Faults.from_directives(
        {
            "usage_scale": "-2",
            "bad_usage": "nonsense",
            "bad_prompt": "1",
            "report_output": "1e9",
            "tokens": "-1",
        }
    )
    assert ignored == Faults()
    assert ignored.output_count(7) == 7 and ignored.prompt_count(9) == 9
    too_long = Faults.from_directives({"report_output": "9" * 5000})  # past Python's int-parse limit
    assert too_long.report_output is None
    assert Faults.from_directives({"bad_usage": "negative"}).output_count(0) == -1


@pytest.mark.parametrize("shape", sorted(BAD_CHUNKS))
def test_bad_chunk_adds_one_malformed_chunk_after_the_first_content(sim_url: str, shape: str) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"[sim:tokens=3,bad_chunk={shape}] hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = httpx.post(f"{sim_url}/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-sim-t"})
    assert r.status_code == 200
    events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {k: chunks[2][k] for k in BAD_CHUNKS[shape]} == BAD_CHUNKS[shape]  # role, content, then it
    good = chunks[:2] + chunks[3:]
    assert all(isinstance(c["choices"], list) for c in good)
    assert good[-1]["usage"]["completion_tokens"] == 3  # the stream goes on, usage as ever
