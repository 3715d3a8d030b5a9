"""A Bedrock vault secret and the SigV4 signature it makes, with botocore's own signer.

The secret is a JSON object `{"access_key_id", "secret_access_key", "session_token"?}`
(checked when it is added: `credentials`). Each request is signed when it is built, for the
service `bedrock` in the provider's region (AWS "Signature Version 4 signing process"); the
signature covers the time, so it is made per request, the one clock an adapter reads. botocore
is imported on first use: no other kind of provider, and no start of the gateway, loads it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

SERVICE = "bedrock"  # the signing name in botocore/data/bedrock-runtime/*/service-2.json


class AwsKey(NamedTuple):
    access_key_id: str
    secret_access_key: str
    session_token: str | None


def credentials(secret: str) -> AwsKey:
    """The key in a vault secret; ValueError naming the missing or invalid field (never a value)."""
    try:
        value: Any = orjson.loads(secret)
    except orjson.JSONDecodeError:
        raise ValueError(
            'a Bedrock secret is a JSON object {"access_key_id": ..., "secret_access_key": ..., "session_token": optional}'
        ) from None
    if not isinstance(value, dict):
        raise ValueError("a Bedrock secret is a JSON object")
    unknown = sorted(set(value) - {"access_key_id", "secret_access_key", "session_token"})
    if unknown:
        raise ValueError(f"a Bedrock secret has no field {unknown[0][:40]!r}")
    fields: dict[str, str | None] = {}
    for name in ("access_key_id", "secret_access_key", "session_token"):
        field = value.get(name)
        if field is None and name == "session_token":
            fields[name] = None
            continue
        if not isinstance(field, str) or not field:
            raise ValueError(f"`{name}` is missing or not a non-empty string")
        if not all("!" <= c <= "~" for c in field):
            raise ValueError(f"`{name}` must be printable ASCII without spaces")
        fields[name] = field
    key_id, secret_key = fields["access_key_id"], fields["secret_access_key"]
    assert key_id is not None and secret_key is not None
    return AwsKey(key_id, secret_key, fields["session_token"])


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
