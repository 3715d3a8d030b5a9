"""The sim's STS `AssumeRole` against the official client: boto3's `sts` client parses its XML
answers, the temporary credentials it issues sign boto3's `bedrock-runtime` requests (with their
session token), a role the key may not assume is AWS's `AccessDenied`, and credentials past
their expiry are refused as AWS refuses them."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

KEY_ID = "AKIASIMTESTKEY000002"
SECRET = "sk-sim-" + KEY_ID  # the sim's rule for AKIASIM... ids when no keys are configured
ROLE = "arn:aws:iam::123456789012:role/"
ONCE = Config(retries={"max_attempts": 1})


def _sts(url: str, secret: str = SECRET) -> Any:
    return boto3.client(
        "sts", endpoint_url=f"{url}/sts", region_name="us-east-1", aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret, config=ONCE,
    )  # fmt: skip


def _bedrock(url: str, credentials: dict[str, Any]) -> Any:
    return boto3.client(
        "bedrock-runtime", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"], config=ONCE,
    )  # fmt: skip


def _ask(client: Any) -> Any:
    return client.converse(
        modelId="anthropic.claude-haiku-4-5-20251001-v1:0",
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
    )


def test_assumed_role_credentials_sign_bedrock_requests(sim_url: str) -> None:
    answer = _sts(sim_url).assume_role(RoleArn=ROLE + "reader", RoleSessionName="s1", ExternalId="ext-1")
    credentials = answer["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIASIM") and credentials["SessionToken"]
    assert answer["AssumedRoleUser"]["Arn"] == "arn:aws:sts::123456789012:assumed-role/reader/s1"
    assert credentials["Expiration"].timestamp() > time.time() + 3000
    assert _ask(_bedrock(sim_url, credentials))["output"]["message"]["content"][0]["text"]
    forged = {**credentials, "SessionToken": "FwoSIMforged"}
    with pytest.raises(ClientError) as caught:
        _ask(_bedrock(sim_url, forged))
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_a_role_the_key_may_not_assume_is_access_denied(sim_url: str) -> None:
    with pytest.raises(ClientError) as caught:
        _sts(sim_url).assume_role(RoleArn=ROLE + "denied-all", RoleSessionName="s2")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_wrong_secret_cannot_assume_any_role(sim_url: str) -> None:
    with pytest.raises(ClientError) as caught:
        _sts(sim_url, secret="sk-sim-wrong").assume_role(RoleArn=ROLE + "reader", RoleSessionName="s3")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_expired_credentials_are_refused(sim_url: str) -> None:
    credentials = _sts(sim_url).assume_role(RoleArn=ROLE + "short-1", RoleSessionName="s4")["Credentials"]
    time.sleep(1.1)
    with pytest.raises(ClientError) as caught:
        _ask(_bedrock(sim_url, credentials))
    assert caught.value.response["Error"]["Code"] == "ExpiredTokenException"
