"""The official `openai` and `anthropic` SDKs -> the real gateway -> the sim speaking Bedrock
Converse (SigV4-checked against the one AWS key it knows): mapping both ways, streams in AWS's
event-stream framing, exact costs per Bedrock's usage, a throttle, a rejected key quarantined,
and the AWS secret nowhere in plaintext."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from conftest import NEMOROUTER, SECRET_SCAN, Gateway, Sim, _wait_for_line, new_gateway, stop, wait_until
from faulty import FaultyUpstream
from nemorouter.sim import anthropic_plan, bedrock_plan

UPSTREAM = "anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU = f"bedrock/{UPSTREAM}"  # `models import --vendor bedrock`: the vendor, then Bedrock's model id
KEY_ID = "AKIA" + secrets.token_hex(8).upper()
AWS_SECRET = secrets.token_urlsafe(30)  # the secret access key: never in a log, answer or database
SECRET_SCAN.registry.add(AWS_SECRET, "an AWS secret access key")
M = Decimal(10**6)
# USD per 1M tokens, the bundled catalog's (litellm's key anthropic.claude-haiku-4-5-20251001-v1:0).
INPUT, OUTPUT, CACHE_READ, CACHE_WRITE = Decimal("1"), Decimal("5"), Decimal("0.1"), Decimal("1.25")
CACHE_WRITE_1H = Decimal("2")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def aws_key(secret: str = AWS_SECRET) -> str:
    return json.dumps({"access_key_id": KEY_ID, "secret_access_key": secret})


def cost(prompt: int, completion: int, cached: int = 0, written: int = 0, hour: int = 0) -> Decimal:
    """`written` counts every cache write, `hour` the part of them with a one-hour lifetime."""
    return (hour * (CACHE_WRITE_1H - CACHE_WRITE) / M) + (
        (prompt - cached - written) * INPUT
        + cached * CACHE_READ
        + written * CACHE_WRITE
        + completion * OUTPUT
    ) / M


@pytest.fixture(scope="module")
def aws_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """A sim that knows exactly one AWS key: KEY_ID with AWS_SECRET."""
    log = open(tmp_path_factory.mktemp("aws-sim") / "sim.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*NEMOROUTER, "sim", "--port", "0", "--key", f"{KEY_ID}:{AWS_SECRET}"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    line = _wait_for_line(proc, "http://", 20)
    yield Sim(line[line.index("http://") :].strip(), proc)
    stop(proc)
    log.close()


def bedrock_gateway(base: Path, url: str, secret: str) -> Gateway:
    gw = new_gateway(base, sim=None)
    gw.cli("providers", "add", "aws", "--kind", "bedrock", "--base-url", url, "--region", "us-east-1")
    gw.cli("providers", "add-key", "aws", "--label", "main", input=secret + "\n")
    gw.cli("models", "import", "--vendor", "bedrock", "--provider", "aws")
    gw.start()
    return gw


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, aws_sim: Sim) -> Iterator[Gateway]:
    gateway = bedrock_gateway(tmp_path_factory.mktemp("bedrock"), aws_sim.url, aws_key())
    yield gateway
    assert gateway.stop() == 0
    for name in ("gateway.log", "cli.log"):
        assert AWS_SECRET not in (gateway.data_dir / name).read_text()


def usage_of(raw: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    return found


def create(client: openai.OpenAI, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    assert Decimal(raw.headers["x-nemo-cost"]) == usage_of(raw)["cost"]
    return raw.parse(), usage_of(raw)


def seen(sim: Sim, needle: str) -> dict[str, Any]:
    found = [r for r in sim.requests() if needle in json.dumps(r["body"])]
    assert found, f"the sim never saw {needle!r}"
    return found[-1]


def sim_prompt(record: dict[str, Any]) -> int:
    """The sim's own count of the prompt it received (what it reports, cache included)."""
    return anthropic_plan.count_prompt_tokens(bedrock_plan.messages_body(record["body"], UPSTREAM))


def stream(gw: Gateway, key: str, **body: Any) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]", frames[-2:]
    return [json.loads(f, parse_float=Decimal) for f in frames[:-1]]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def spent(gw: Gateway, account: str) -> Decimal:
    return Decimal(str(gw.balance(account)["total_usage"]))


def test_text_both_ways_signed_and_charged_exactly(gw: Gateway, aws_sim: Sim) -> None:
    account = gw.account("5.00")
    client = gw.openai(gw.key(account))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello e2e-bedrock-text [sim:cached=4,cache_write=3]"},
    ]
    reply, usage = create(client, model=HAIKU, messages=messages)
    assert (
        reply.model == HAIKU and reply.choices[0].finish_reason == "stop" and reply.choices[0].message.content
    )
    record = seen(aws_sim, "e2e-bedrock-text")
    words = len(reply.choices[0].message.content.split())
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (sim_prompt(record), words)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 4, "cache_write_tokens": 3}
    assert usage["cost"] == cost(usage["prompt_tokens"], words, cached=4, written=3)
    # What Bedrock received: Converse at the model's path, SigV4 for us-east-1, the hold's limit.
    assert record["path"] == f"/model/{UPSTREAM}/converse"
    assert record["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in record["authorization"]
    assert record["body"]["system"] == [{"text": "Be brief."}]
    assert record["body"]["inferenceConfig"] == {"maxTokens": 64000}
    assert AWS_SECRET not in json.dumps(record)
    chunks = stream(gw, client.api_key, model=HAIKU, messages=messages)
    assert text_of(chunks) == reply.choices[0].message.content
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ] == ["stop"]
    streamed = chunks[-1]["usage"]
    assert streamed["cost"] == usage["cost"] and streamed["completion_tokens"] == words
    assert seen(aws_sim, "e2e-bedrock-text")["path"] == f"/model/{UPSTREAM}/converse-stream"
    assert spent(gw, account) == 2 * usage["cost"]
    # One-hour cache writes (Bedrock's cacheDetails) at the catalog's one-hour write price.
    _, hour_usage = create(
        client,
        model=HAIKU,
        messages=[{"role": "user", "content": "e2e-bedrock-1h [sim:cache_write=2,cache_write_1h=5]"}],
    )
    assert hour_usage["prompt_tokens_details"]["cache_write_tokens"] == 7
    assert hour_usage["cost"] == cost(
        hour_usage["prompt_tokens"], hour_usage["completion_tokens"], written=7, hour=5
    )
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_tool_calls_both_ways(gw: Gateway, aws_sim: Sim, streamed: bool) -> None:
    account = gw.account("5.00")
    client = gw.openai(gw.key(account))
    question = {"role": "user", "content": f"Weather in Paris? e2e-bedrock-tools-{streamed}"}
    if streamed:
        chunks = stream(
            gw, client.api_key, model=HAIKU, messages=[question], tools=[WEATHER], tool_choice="required"
        )
        parts = [
            d["tool_calls"][0]
            for c in chunks
            if c["choices"]
            for d in [c["choices"][0]["delta"]]
            if d.get("tool_calls")
        ]
        call_id, name = parts[0]["id"], parts[0]["function"]["name"]
        arguments = "".join(p["function"].get("arguments") or "" for p in parts)
        usage = chunks[-1]["usage"]
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert [f for f in finishes if f] == ["tool_calls"]
    else:
        reply, usage = create(
            client, model=HAIKU, messages=[question], tools=[WEATHER], tool_choice="required"
        )
        assert reply.choices[0].finish_reason == "tool_calls"
        (call,) = reply.choices[0].message.tool_calls
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert name == "get_weather" and isinstance(json.loads(arguments)["city"], str)
    sent = seen(aws_sim, f"e2e-bedrock-tools-{streamed}")["body"]
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": WEATHER["function"]["parameters"]
    }
    assert usage["cost"] == cost(usage["prompt_tokens"], usage["completion_tokens"])
    # The result goes back as a toolResult; the model answers in text.
    follow = [
        question,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    answer, after = create(client, model=HAIKU, messages=follow, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    record = [r for r in aws_sim.requests() if "sunny, 21C" in json.dumps(r["body"])][-1]
    assert record["body"]["messages"][2]["content"][0]["toolResult"] == {
        "toolUseId": call_id,
        "content": [{"text": "sunny, 21C"}],
    }
    assert after["prompt_tokens"] == sim_prompt(record)
    assert after["cost"] == cost(after["prompt_tokens"], after["completion_tokens"])
    assert spent(gw, account) == usage["cost"] + after["cost"]
    assert gw.verify()["ok"] is True


def test_the_anthropic_sdk_through_a_bedrock_upstream(gw: Gateway, aws_sim: Sim) -> None:
    account = gw.account("5.00")
    client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key(account), max_retries=0)
    raw = client.messages.with_raw_response.create(
        model=HAIKU,
        max_tokens=300,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi e2e-bedrock-messages [sim:tokens=6]"}],
    )
    message = raw.parse()
    usage = json.loads(raw.http_response.text, parse_float=Decimal)["usage"]
    assert message.type == "message" and message.stop_reason == "end_turn"
    assert len(message.content[0].text.split()) == 6 and usage["output_tokens"] == 6
    record = seen(aws_sim, "e2e-bedrock-messages")
    assert record["body"]["inferenceConfig"] == {"maxTokens": 300}
    assert usage["input_tokens"] == sim_prompt(record)
    assert Decimal(raw.headers["x-nemo-cost"]) == usage["cost"] == cost(usage["input_tokens"], 6)
    with client.messages.stream(
        model=HAIKU,
        max_tokens=300,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi e2e-bedrock-messages [sim:tokens=6]"}],
    ) as events:
        assert events.get_final_message().content[0].text == message.content[0].text
    assert gw.verify()["ok"] is True


def test_a_bedrock_throttle_is_a_429_and_fails_over_to_another_deployment(
    tmp_path: Path, aws_sim: Sim
) -> None:
    # Its own gateway: the throttle cools the vault key down for the retry-after it names (7 s).
    gw = bedrock_gateway(tmp_path, aws_sim.url, aws_key())
    account = gw.account("5.00")
    key = gw.key(account)
    answer = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": HAIKU, "messages": [{"role": "user", "content": "hi [sim:status=429,retry_after=7]"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 429 and answer.json()["error"]["type"] == "upstream_rate_limited"
    assert spent(gw, account) == 0 and gw.balance(account)["held"] == 0
    throttled = FaultyUpstream(status=429).start()
    try:
        assert (
            gw.admin(
                "POST",
                "/providers",
                {
                    "name": "aws-busy",
                    "kind": "bedrock",
                    "base_url": throttled.url,
                    "config": {"region": "us-east-1"},
                },
            ).status_code
            == 201
        )
        assert (
            gw.admin("POST", "/providers/aws-busy/keys", {"secret": aws_key(), "label": "k"}).status_code
            == 201
        )
        deployments = [
            {"provider": "aws-busy", "upstream_model": UPSTREAM, "priority": 0},
            {"provider": "aws", "upstream_model": UPSTREAM, "priority": 1},
        ]
        body = {
            "id": "t/bedrock-failover",
            "context_length": 200000,
            "max_output": 1000,
            "pricing": {"input": "1", "output": "5"},
            "deployments": deployments,
        }
        assert gw.admin("POST", "/models", body).status_code == 201
        served = gw.openai(key).chat.completions.create(
            model="t/bedrock-failover", messages=[{"role": "user", "content": "e2e-bedrock-failover"}]
        )
        assert served.choices[0].message.content and throttled.requests == 1
        seen(aws_sim, "e2e-bedrock-failover")
        assert gw.verify()["ok"] is True
    finally:
        throttled.stop()
        assert gw.stop() == 0


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_a_wrong_secret_is_a_rejected_key_quarantined_and_nothing_charged(
    tmp_path: Path, aws_sim: Sim, streamed: bool
) -> None:
    wrong = secrets.token_urlsafe(30)
    SECRET_SCAN.registry.add(wrong, "a wrong AWS secret access key")
    gw = bedrock_gateway(tmp_path, aws_sim.url, aws_key(wrong))
    try:
        account = gw.account("5.00")
        with pytest.raises(openai.APIStatusError) as caught:
            gw.openai(gw.key(account)).chat.completions.create(
                model=HAIKU, messages=[{"role": "user", "content": "hi"}], stream=streamed
            )
        assert caught.value.status_code == 502 and "refused its credentials" in caught.value.body["message"]
        assert wrong not in caught.value.response.text
        assert wait_until(
            lambda: gw.admin("GET", "/providers/aws").json()["data"]["keys"][0]["quarantined_at"]
        )
        assert wrong not in gw.admin("GET", "/providers/aws").text
        assert spent(gw, account) == 0 and gw.balance(account)["held"] == 0
        assert gw.verify()["ok"] is True
    finally:
        assert gw.stop() == 0
    assert wrong not in (gw.data_dir / "gateway.log").read_text()


def test_a_bedrock_secret_that_is_not_an_aws_key_is_refused_naming_the_field(gw: Gateway) -> None:
    for bad, named in (
        ("AKIAXXXX:not-json", "JSON object"),
        (json.dumps({"access_key_id": KEY_ID}), "secret_access_key"),
        (json.dumps({"access_key_id": KEY_ID, "secret_access_key": "a b"}), "secret_access_key"),
    ):
        refused = gw.admin("POST", "/providers/aws/keys", {"secret": bad})
        assert refused.status_code == 400 and named in refused.text and "not-json" not in refused.text
        assert "a b" not in refused.json()["error"]["message"]
    cli = gw.cli("providers", "add-key", "aws", input='{"access_key_id": "AKIA1"}\n', check=False)
    assert cli.returncode != 0 and "secret_access_key" in cli.stderr + cli.stdout
    no_region = gw.admin(
        "POST", "/providers", {"name": "aws-x", "kind": "bedrock", "base_url": "https://example.com"}
    )
    assert no_region.status_code == 400 and "region" in no_region.text
    made = gw.admin(
        "POST", "/providers", {"name": "aws-eu", "kind": "bedrock", "config": {"region": "eu-west-3"}}
    )
    assert (
        made.status_code == 201
        and made.json()["data"]["base_url"] == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    )


def charge_of(gw: Gateway, key: str, request_id: str) -> Decimal:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    return Decimal(str(json.loads(found.text, parse_float=Decimal)["data"]["total_cost"]))


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("lie", ["report_output=10000000", "bad_usage=negative", "bad_prompt=string"])
def test_a_lying_usage_report_is_charged_at_most_the_hold(gw: Gateway, streamed: bool, lie: str) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    request = {
        "model": HAIKU,
        "messages": [{"role": "user", "content": f"[sim:tokens=30,{lie}] A story."}],
        "max_tokens": 10,
    }
    hold = gw.hold_of(request)
    raw = gw.openai(key).chat.completions.with_raw_response.create(**request, stream=streamed)
    request_id = raw.headers["x-nemo-request-id"]
    parsed = raw.parse()
    if streamed:
        assert "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    assert wait_until(lambda: gw.balance(account)["held"] == 0, timeout=10)
    charged = charge_of(gw, key, request_id)
    assert 0 < charged <= hold and spent(gw, account) == charged
    assert gw.verify()["ok"] is True


def test_a_corrupt_event_stream_message_ends_the_stream_with_an_error_and_a_bounded_charge(
    gw: Gateway,
) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    request = {
        "model": HAIKU,
        "messages": [{"role": "user", "content": "[sim:tokens=20,malformed=1] Go."}],
        "max_tokens": 50,
    }
    hold = gw.hold_of(request)
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={**request, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        request_id = response.headers["x-nemo-request-id"]
    assert '"error"' in frames[-1] and "[DONE]" not in frames  # the first piece went out; then the failure
    assert wait_until(lambda: gw.balance(account)["held"] == 0, timeout=10)
    assert 0 <= charge_of(gw, key, request_id) <= hold
    assert gw.verify()["ok"] is True


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "`n`"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ],
)
def test_what_converse_cannot_take_is_a_400_before_anything_is_sent_or_charged(
    gw: Gateway, aws_sim: Sim, extra: dict[str, Any], named: str
) -> None:
    account = gw.account("5.00")
    before = len(aws_sim.requests())
    with pytest.raises(openai.BadRequestError) as caught:
        gw.openai(gw.key(account)).chat.completions.create(
            model=HAIKU, messages=[{"role": "user", "content": "hi e2e-bedrock-refused"}], **extra
        )
    assert named in caught.value.body["message"]
    assert len(aws_sim.requests()) == before  # never sent
    assert spent(gw, account) == 0 and gw.balance(account)["held"] == 0
