"""A Bedrock vault key that assumes an AWS role: the gateway asks the sim's STS for the role's
temporary credentials (botocore's client, SigV4 for `sts`), signs Bedrock requests with them
(and their session token), reuses them until they are due, mints new ones before they expire,
and quarantines a key STS refuses the role, charging nothing. Neither the key's secret nor
the role's appears in a log, an answer or the database."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import SECRET_SCAN, Gateway, Sim, new_gateway, wait_until

UPSTREAM = "anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU = f"bedrock/{UPSTREAM}"
KEY_ID = "AKIASIM" + secrets.token_hex(6).upper()  # the sim knows AKIASIM* keys: secret sk-sim-<id>
ACCOUNT = "123456789012"


def aws_key(role: str, **extra: str) -> str:
    secret = "sk-sim-" + KEY_ID
    SECRET_SCAN.registry.add(secret, "an AWS secret access key that assumes a role")
    return json.dumps(
        {
            "access_key_id": KEY_ID,
            "secret_access_key": secret,
            "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
            **extra,
        }
    )


def role_gateway(base: Path, sim: Sim, secret: str) -> Gateway:
    gw = new_gateway(base, sim=None)
    gw.cli(
        "providers", "add", "aws", "--kind", "bedrock", "--base-url", f"{sim.url}", "--region", "us-east-1",
        "--sts-url", f"{sim.url}/sts",
    )  # fmt: skip
    gw.cli("providers", "add-key", "aws", "--label", "main", input=secret + "\n")
    gw.cli("models", "import", "--vendor", "bedrock", "--provider", "aws")
    gw.start()
    return gw


def sent(sim: Sim) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["path"].startswith(("/sts", "/model/"))]


@pytest.fixture
def gw(tmp_path: Path, sim: Sim) -> Iterator[Gateway]:
    gw = role_gateway(tmp_path, sim, aws_key("bedrock-invoker", external_id="nemo-ext-1"))
    yield gw
    assert gw.verify()["ok"] is True
    assert gw.stop() == 0


def test_requests_are_signed_with_the_roles_credentials_minted_once(gw: Gateway, sim: Sim) -> None:
    sim.clear()
    account = gw.account("5.00")
    client = gw.openai(gw.key(account))
    for _ in range(3):
        answer = client.chat.completions.create(
            model=HAIKU, messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        assert answer.choices[0].message.content
    streamed = client.chat.completions.create(
        model=HAIKU, messages=[{"role": "user", "content": "hi"}], max_tokens=20, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    calls = sent(sim)
    assumed = [r for r in calls if r["path"].startswith("/sts")]
    assert len(assumed) == 1  # one AssumeRole, its credentials reused
    assert (
        f"Credential={KEY_ID}/" in assumed[0]["authorization"]
        and "/sts/aws4_request" in assumed[0]["authorization"]
    )
    bedrock = [r for r in calls if r["path"].startswith("/model/")]
    assert len(bedrock) == 4
    for request in bedrock:  # signed by the role's temporary key, never the vault key itself
        assert "Credential=ASIASIM" in request["authorization"] and KEY_ID not in request["authorization"]
        assert request["headers"]["x-amz-security-token"].startswith("FwoSIM")
    assert Decimal(str(gw.balance(account)["total_usage"])) > 0


def test_credentials_due_to_expire_are_replaced_before_they_do(tmp_path: Path, sim: Sim) -> None:
    gw = role_gateway(tmp_path, sim, aws_key("short-4"))  # the sim's STS: credentials for 4 s
    try:
        client = gw.openai(gw.key(gw.account("5.00")))
        sim.clear()
        first = client.chat.completions.create(
            model=HAIKU, messages=[{"role": "user", "content": "a"}], max_tokens=5
        )
        time.sleep(3.2)  # past their last use (3 s: a quarter of their life before expiry)
        second = client.chat.completions.create(
            model=HAIKU, messages=[{"role": "user", "content": "b"}], max_tokens=5
        )
        assert first.choices[0].message.content and second.choices[0].message.content
        keys = {
            r["authorization"].split("Credential=")[1].split("/")[0]
            for r in sent(sim)
            if r["path"].startswith("/model/")
        }
        assert len(keys) == 2 and len([r for r in sent(sim) if r["path"].startswith("/sts")]) == 2
        assert gw.verify()["ok"] is True
    finally:
        assert gw.stop() == 0


def test_a_key_refused_the_role_is_quarantined_and_nothing_is_charged(tmp_path: Path, sim: Sim) -> None:
    gw = role_gateway(tmp_path, sim, aws_key("denied-everyone"))
    try:
        account = gw.account("5.00")
        with pytest.raises(openai.APIStatusError) as caught:
            gw.openai(gw.key(account)).chat.completions.create(
                model=HAIKU, messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 502, caught.value.response.text
        assert "the provider refused its credentials" in caught.value.response.text
        assert "sk-sim-" not in caught.value.response.text
        assert wait_until(
            lambda: gw.admin("GET", "/providers/aws").json()["data"]["keys"][0]["quarantined_at"]
        )
        balance = gw.balance(account)
        assert Decimal(str(balance["total_usage"])) == 0 and Decimal(str(balance["held"])) == 0
        assert gw.verify()["ok"] is True
    finally:
        assert gw.stop() == 0
    assert "sk-sim-" + KEY_ID not in (gw.data_dir / "gateway.log").read_text()


def test_an_unreachable_sts_is_a_failure_of_the_attempt_not_of_the_key(tmp_path: Path, sim: Sim) -> None:
    gw = new_gateway(tmp_path, sim=None)
    gw.cli(
        "providers", "add", "aws", "--kind", "bedrock", "--base-url", sim.url, "--region", "us-east-1",
        "--sts-url", "http://127.0.0.1:9/sts",
    )  # fmt: skip
    gw.cli("providers", "add-key", "aws", "--label", "main", input=aws_key("bedrock-invoker") + "\n")
    gw.cli("models", "import", "--vendor", "bedrock", "--provider", "aws")
    gw.start()
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            gw.openai(gw.key(gw.account("5.00"))).chat.completions.create(
                model=HAIKU, messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 502 and "STS could not be reached" in caught.value.response.text
        key = gw.admin("GET", "/providers/aws").json()["data"]["keys"][0]
        assert key["quarantined_at"] is None
    finally:
        assert gw.stop() == 0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"role_arn": "arn:aws:iam::12:role/x"}, "role_arn"),
        ({"role_arn": "not-an-arn"}, "role_arn"),
        ({"external_id": "abc"}, "external_id"),  # without a role
        ({"role_arn": f"arn:aws:iam::{ACCOUNT}:role/x", "external_id": "a b"}, "external_id"),
    ],
)
def test_a_bad_role_is_refused_when_the_key_is_added_naming_the_field(
    tmp_path: Path, sim: Sim, fields: dict[str, str], named: str
) -> None:
    gw = role_gateway(tmp_path, sim, aws_key("bedrock-invoker"))
    try:
        secret = json.dumps({"access_key_id": KEY_ID, "secret_access_key": "sk-sim-" + KEY_ID, **fields})
        refused = gw.admin("POST", "/providers/aws/keys", {"secret": secret})
        assert refused.status_code == 400 and named in refused.json()["error"]["message"]
        assert "sk-sim-" not in refused.text
        bad_sts = gw.admin(
            "POST",
            "/providers",
            {"name": "x", "kind": "bedrock", "config": {"region": "us-east-1", "sts_url": "ftp://x"}},
        )
        assert bad_sts.status_code == 400 and "sts_url" in bad_sts.text
        not_bedrock = gw.admin(
            "POST",
            "/providers",
            {"name": "y", "kind": "openai", "config": {"sts_url": "https://sts.example"}},
        )
        assert not_bedrock.status_code == 400
    finally:
        assert gw.stop() == 0
