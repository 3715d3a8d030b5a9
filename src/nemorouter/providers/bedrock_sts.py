"""AWS roles for Bedrock: a vault key with a `role_arn` signs nothing itself; it assumes the role
with STS (`AssumeRole`, botocore's own client) and the role's temporary credentials sign the
requests. The engine calls `mint` in a worker thread (botocore blocks) and caches what it returns
per vault key, refreshing it before it expires (engine/minted.py); a key without a role is
returned as it is, for as long as it lives.

STS is called at `config.sts_url` when the provider sets it (a VPC endpoint, the simulator),
else at the region's endpoint (`https://sts.{region}.amazonaws.com`). What a failure means
(STS API reference, "Common errors"): a key STS does not know, a signature it refuses, an
expired token, or a role the key may not assume (`AccessDenied`: the role's trust policy) make
the key useless for this provider: an AUTH failure that quarantines it. Throttling, 5xx and an
endpoint that cannot be reached are not the key's fault. No message carries the secret.
"""

from __future__ import annotations

from typing import Any

import orjson

from nemorouter.providers.bedrock_signing import AwsKey, credentials
from nemorouter.providers.types import Failure, FailureKind, Minter, Upstream

SESSION_NAME = "nemorouter"  # who assumed the role, in the role's CloudTrail entries
DURATION = 3600  # seconds asked for: STS's default, allowed by every role
FOREVER = 10.0**9  # the lifetime of a key that assumes no role: it is the credential
_REFUSED_KEY = frozenset(
    {
        "AccessDenied",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "RegionDisabledException",
    }
)
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded"})


def sts_url(upstream: Upstream) -> str:
    configured = upstream.config.get("sts_url")
    if isinstance(configured, str) and configured:
        return configured
    return f"https://sts.{upstream.config.get('region')}.amazonaws.com"


def mint(upstream: Upstream) -> tuple[str, float]:
    """The credentials that sign this key's requests, as a Bedrock secret, and their lifetime in
    seconds (blocking: run in a worker thread)."""
    key = credentials(upstream.secret)
    if key.role_arn is None:
        return upstream.secret, FOREVER
    temporary, lifetime = _assume(key, str(upstream.config.get("region")), sts_url(upstream))
    secret = {
        "access_key_id": temporary.access_key_id,
        "secret_access_key": temporary.secret_access_key,
        "session_token": temporary.session_token,
    }
    return orjson.dumps(secret).decode(), lifetime


def _assume(key: AwsKey, region: str, endpoint: str) -> tuple[AwsKey, float]:
    from datetime import UTC, datetime

    import botocore.session
    from botocore.config import Config

    client: Any = botocore.session.Session().create_client(
        "sts",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        aws_session_token=key.session_token,
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
    )
    asked: dict[str, Any] = {
        "RoleArn": key.role_arn,
        "RoleSessionName": SESSION_NAME,
        "DurationSeconds": DURATION,
    }
    if key.external_id is not None:
        asked["ExternalId"] = key.external_id
    found = client.assume_role(**asked)["Credentials"]
    expiration = found["Expiration"]  # a datetime, as botocore parses STS's timestamp
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    lifetime = (expiration - datetime.now(UTC)).total_seconds()
    return AwsKey(
        str(found["AccessKeyId"]), str(found["SecretAccessKey"]), str(found["SessionToken"])
    ), lifetime


def classify(exc: BaseException) -> Failure:
    """The failure an AssumeRole raised, by its STS error code only."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "")
        shown = f" ({code})" if code.isascii() and code.isalnum() and len(code) < 64 else ""
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        if code in _THROTTLED or status == 429:
            return Failure(
                FailureKind.RATE_LIMITED, 429, f"STS throttled the role's credentials{shown}", retryable=True
            )
        if code in _REFUSED_KEY or status in (401, 403):
            return Failure(FailureKind.AUTH, 401, f"STS refused this key the role{shown}", retryable=True)
        if status >= 500:
            return Failure(FailureKind.SERVER, 503, f"STS is unavailable{shown}", retryable=True)
        return Failure(
            FailureKind.AUTH, 401, f"STS did not give the role's credentials{shown}", retryable=True
        )
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return Failure(FailureKind.CONNECT, 502, "STS could not be reached", retryable=True)
    if isinstance(exc, ReadTimeoutError):
        return Failure(FailureKind.TIMEOUT, 504, "STS did not answer in time", retryable=True)
    # A secret that is not a key (the admin API checks it, so: changed under us), or an answer
    # without credentials.
    return Failure(
        FailureKind.AUTH, 401, "this Bedrock key could not be used to assume its role", retryable=True
    )


AWS_ROLE = Minter(mint, classify)
