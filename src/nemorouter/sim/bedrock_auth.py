"""SigV4 verification as Bedrock does it, and AWS's error answers (restJson1: the type in the
`x-amzn-ErrorType` header, `{"message": ...}` in the body), for the simulator's Bedrock routes.

Keys: an accepted key `ACCESS_KEY_ID:SECRET` (``nemorouter sim --key``) makes that access key
id known with that secret; with no configured keys, any access key id starting ``AKIASIM`` is
known and its secret is ``sk-sim-`` followed by the id. The signature is recomputed with
botocore's own signer over what arrived (method, Host, raw path, query, the signed headers and
body): an unknown access key id is AWS's 403 ``UnrecognizedClientException``, a signature that
does not match is 403 ``InvalidSignatureException``, a request with none 403
``MissingAuthenticationTokenException``. The request's age is not checked. Temporary credentials
the sim's STS issued (sim/sts.py) are known too, with their session token required in
``X-Amz-Security-Token`` and refused once expired (403 ``ExpiredTokenException``).
"""

from __future__ import annotations

import hmac
import re
import secrets
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from nemorouter.sim.state import SimState

JSON = "application/json"
SIM_ACCESS_PREFIX = "AKIASIM"
_ACCESS_KEY = re.compile(r"[A-Z0-9]{16,128}")
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})"
)
_CORAL = ":http://internal.amazon.com/coral/com.amazon.coral.service/"


def aws_error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """An AWS JSON error, as Bedrock Runtime sends it."""
    head = {
        "x-amzn-ErrorType": error_type + _CORAL,
        "x-amzn-RequestId": secrets.token_hex(16),
        **(headers or {}),
    }
    return Response(orjson.dumps({"message": message}), status_code=status, media_type=JSON, headers=head)


def aws_secret(state: SimState, access_key_id: str) -> str | None:
    """The secret of a known access key id, else None."""
    if state.accepted_keys is None:
        return "sk-sim-" + access_key_id if access_key_id.startswith(SIM_ACCESS_PREFIX) else None
    for entry in state.accepted_keys:
        key_id, sep, secret = entry.partition(":")
        if sep and key_id == access_key_id and _ACCESS_KEY.fullmatch(key_id):
            return secret
    return None


def _unrecognized() -> Response:
    return aws_error(
        403, "UnrecognizedClientException", "The security token included in the request is invalid."
    )


async def verify(request: Request, body: bytes, state: SimState, service: str = "bedrock") -> Response | None:
    """None when the request is signed by a known key for `service`; else AWS's 403 for what is wrong."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    found = _AUTH.fullmatch(request.headers.get("authorization", "").strip())
    if found is None:
        return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    key_id, _, region, signed_for, signed, signature = found.groups()
    session = state.aws_sessions.get(key_id)
    if session is not None:  # temporary credentials from the sim's STS
        secret, issued_token, expires = session
        if time.time() >= expires:
            return aws_error(
                403, "ExpiredTokenException", "The security token included in the request is expired"
            )
        if not hmac.compare_digest(request.headers.get("x-amz-security-token", ""), issued_token):
            return _unrecognized()
    else:
        known = aws_secret(state, key_id)
        if known is None:
            return _unrecognized()
        secret = known
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names or signed_for != service:
        return _signature_mismatch()
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.url.query
    url = f"{request.url.scheme}://{request.headers.get('host', '')}{raw_path.decode('latin-1')}"
    url += f"?{query}" if query else ""
    headers = {name: request.headers.get(name, "") for name in names if name != "host"}
    signed_request = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    signed_request.context["timestamp"] = headers["x-amz-date"]
    session_token = request.headers.get("x-amz-security-token") if session is not None else None
    signer = SigV4Auth(Credentials(key_id, secret, session_token), service, region)
    canonical = signer.canonical_request(signed_request)
    expected = signer.signature(signer.string_to_sign(signed_request, canonical), signed_request)
    if not hmac.compare_digest(expected, signature):
        return _signature_mismatch()
    return None


def _signature_mismatch() -> Response:
    return aws_error(
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS "
        "Secret Access Key and signing method. Consult the service documentation for details.",
    )
