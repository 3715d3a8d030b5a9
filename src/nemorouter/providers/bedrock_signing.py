"""A Bedrock vault secret and the SigV4 signature it makes, with botocore's own signer.

The secret is a JSON object `{"access_key_id", "secret_access_key", "session_token"?,
"role_arn"?, "external_id"?}` (checked when it is added: `credentials`). With a `role_arn`, the
key is exchanged for the role's temporary credentials before requests are signed
(providers/bedrock_sts.py), and those sign them. Each request is signed when it is built, for the
service `bedrock` in the provider's region (AWS "Signature Version 4 signing process"); the
signature covers the time, so it is made per request, the one clock an adapter reads. botocore
is imported on first use: no other kind of provider, and no start of the gateway, loads it.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

SERVICE = "bedrock"  # the signing name in botocore/data/bedrock-runtime/*/service-2.json
# IAM's ARN of a role (IAM User Guide, "IAM identifiers"): partition, 12-digit account, path/name.
ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
# STS AssumeRole's ExternalId: 2-1224 of letters, digits and `+=,.@:/-` (STS API reference).
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_FIELDS = ("access_key_id", "secret_access_key", "session_token", "role_arn", "external_id")


class AwsKey(NamedTuple):
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    role_arn: str | None = None  # a role this key assumes, whose credentials sign the requests
    external_id: str | None = None  # the ExternalId the role's trust policy asks for


def credentials(secret: str) -> AwsKey:
    """The key in a vault secret; ValueError naming the missing or invalid field (never a value)."""
    try:
        value: Any = orjson.loads(secret)
    except orjson.JSONDecodeError:
        raise ValueError(
            'a Bedrock secret is a JSON object {"access_key_id": ..., "secret_access_key": ...,'
            ' "session_token", "role_arn", "external_id": optional}'
        ) from None
    if not isinstance(value, dict):
        raise ValueError("a Bedrock secret is a JSON object")
    unknown = sorted(set(value) - set(_FIELDS))
    if unknown:
        raise ValueError(f"a Bedrock secret has no field {unknown[0][:40]!r}")
    fields: dict[str, str | None] = {}
    for name in _FIELDS:
        field = value.get(name)
        if field is None and name in ("session_token", "role_arn", "external_id"):
            fields[name] = None
            continue
        if not isinstance(field, str) or not field:
            raise ValueError(f"`{name}` is missing or not a non-empty string")
        if not all("!" <= c <= "~" for c in field):
            raise ValueError(f"`{name}` must be printable ASCII without spaces")
        fields[name] = field
    role, external = fields["role_arn"], fields["external_id"]
    if role is not None and ROLE_ARN.fullmatch(role) is None:
        raise ValueError("`role_arn` must be an IAM role ARN: arn:aws:iam::123456789012:role/NAME")
    if external is not None and (role is None or EXTERNAL_ID.fullmatch(external) is None):
        raise ValueError("`external_id` goes with a `role_arn`: 2 to 1224 of letters, digits and +=,.@:/-")
    key_id, secret_key = fields["access_key_id"], fields["secret_access_key"]
    assert key_id is not None and secret_key is not None
    return AwsKey(key_id, secret_key, fields["session_token"], role, external)


def signed_headers(url: str, body: bytes, region: str, key: AwsKey) -> dict[str, str]:
    """The headers of a POST of `body` to `url`, signed (Content-Type, X-Amz-Date, the
    session token if any, Authorization). Host is signed as the client will send it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(
        Credentials(key.access_key_id, key.secret_access_key, key.session_token), SERVICE, region
    ).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}
