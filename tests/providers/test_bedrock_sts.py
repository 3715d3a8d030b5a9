"""providers/bedrock_sts.py: a key without a role is its own credential; with one, what a
failure to assume it means (by STS's error code, never its text) is classified exactly."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from nemorouter.providers import bedrock, bedrock_sts
from nemorouter.providers.bedrock_signing import credentials
from nemorouter.providers.types import FailureKind, Upstream

KEY = {"access_key_id": "AKIAEXAMPLE000000001", "secret_access_key": "s3cr3t/Example+Key"}


def test_bedrock_mints_through_the_role_minter() -> None:
    assert bedrock.ADAPTER.minter is bedrock_sts.AWS_ROLE


def test_a_key_without_a_role_is_its_own_credential_for_ever() -> None:
    secret = json.dumps(KEY)
    assert bedrock_sts.mint(Upstream("m", "http://x", secret, 10, {"region": "us-east-1"})) == (secret, 1e9)


def test_the_role_and_external_id_are_read_and_the_sts_endpoint_is_the_regions_unless_set() -> None:
    key = credentials(
        json.dumps({**KEY, "role_arn": "arn:aws:iam::123456789012:role/a/b", "external_id": "x-1"})
    )
    assert (key.role_arn, key.external_id) == ("arn:aws:iam::123456789012:role/a/b", "x-1")
    assert (
        bedrock_sts.sts_url(Upstream("m", "u", "s", 1, {"region": "eu-west-3"}))
        == "https://sts.eu-west-3.amazonaws.com"
    )
    assert (
        bedrock_sts.sts_url(Upstream("m", "u", "s", 1, {"region": "eu-west-3", "sts_url": "http://v"}))
        == "http://v"
    )


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "secret text s3cr3t"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "AssumeRole",
    )


@pytest.mark.parametrize(
    ("error", "kind", "key_rejected"),
    [
        (_client_error("AccessDenied", 403), FailureKind.AUTH, True),
        (_client_error("InvalidClientTokenId", 403), FailureKind.AUTH, True),
        (_client_error("SignatureDoesNotMatch", 403), FailureKind.AUTH, True),
        (_client_error("ExpiredToken", 400), FailureKind.AUTH, True),
        (_client_error("Throttling", 400), FailureKind.RATE_LIMITED, False),
        (_client_error("ServiceUnavailable", 503), FailureKind.SERVER, False),
        (EndpointConnectionError(endpoint_url="http://x"), FailureKind.CONNECT, False),
        (ConnectTimeoutError(endpoint_url="http://x"), FailureKind.CONNECT, False),
        (ReadTimeoutError(endpoint_url="http://x"), FailureKind.TIMEOUT, False),
        (ValueError("`secret_access_key` is missing"), FailureKind.AUTH, True),
    ],
)
def test_failures_are_classified_by_code_without_their_text(
    error: BaseException, kind: FailureKind, key_rejected: bool
) -> None:
    failure = bedrock_sts.classify(error)
    assert failure.kind is kind and failure.retryable and failure.key_rejected is key_rejected
    assert "s3cr3t" not in failure.message and "secret_access_key" not in failure.message
