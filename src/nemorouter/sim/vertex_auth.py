"""Google's OAuth token endpoint for service accounts, as the sim plays it (Vertex AI's auth).

google-auth posts the JWT-bearer grant (RFC 7523) form-encoded to the key file's `token_uri`:
`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`, the JWT signed RS256
with the account's private key, `iss` the client_email, `aud` Google's token endpoint
(`https://oauth2.googleapis.com/token`, whatever the token_uri: google-auth's
`oauth2/service_account.py`), a `scope`, `iat` and `exp` an hour apart. The sim verifies the signature against the public key of an account it
accepts (registered with `POST /_sim/vertex/service-accounts`) and answers an opaque bearer
token with `expires_in`; anything else gets Google's `invalid_grant` 400. `GET
/_sim/vertex/tokens` lists the tokens issued (tests register them with the secret scan);
`DELETE` revokes them all.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim.state import ServiceAccount, SimState

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/_sim/vertex/token"
TOKEN_PREFIX = "ya29.sim-"  # Google's access tokens start with ya29.
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
AUDIENCE = "https://oauth2.googleapis.com/token"
JSON = "application/json; charset=utf-8"


def _grant_error(description: str, status: int = 400, error: str = "invalid_grant") -> Response:
    body = {"error": error, "error_description": description}
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _claims(assertion: str, state: SimState) -> tuple[dict[str, Any], ServiceAccount] | str:
    """The verified claims of a grant and whose they are, or why it is refused."""
    try:
        head, body, signature = assertion.split(".")
        header, claims = orjson.loads(_b64(head)), orjson.loads(_b64(body))
        sig = _b64(signature)
    except (ValueError, orjson.JSONDecodeError):
        return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        return "Invalid JWT Signature."
    account = state.service_accounts.get(str(claims.get("iss")))
    if account is None:
        return "Invalid grant: account not found"
    key = load_pem_public_key(account.public_key_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(sig, f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "Invalid JWT Signature."
    now = time.time()
    exp, iat = claims.get("exp"), claims.get("iat")
    if (
        not isinstance(exp, int)
        or not isinstance(iat, int)
        or not iat - 300 <= now <= exp
        or exp - iat > 3600
    ):
        return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
    if claims.get("aud") != AUDIENCE:
        return "Invalid JWT: Failed audience check."
    if CLOUD_PLATFORM not in str(claims.get("scope") or "").split():
        return "Invalid OAuth scope or ID token audience provided."
    return claims, account


async def token(request: Request) -> Response:
    state: SimState = request.app.state.sim
    raw = await request.body()
    form = parse_qs(raw.decode("utf-8", "replace"))
    state.record(request, b"", None)  # the grant is a credential: never recorded
    if form.get("grant_type") != [JWT_BEARER] or len(form.get("assertion", [])) != 1:
        return _grant_error("Invalid grant_type or missing assertion.", error="unsupported_grant_type")
    verified = _claims(form["assertion"][0], state)
    if isinstance(verified, str):
        return _grant_error(verified)
    _, account = verified
    if account.token_status is not None:
        return _grant_error("The service is currently unavailable.", account.token_status, "internal_failure")
    value = TOKEN_PREFIX + secrets.token_urlsafe(24)
    state.access_tokens[value] = time.time() + account.token_lifetime
    body = {"access_token": value, "expires_in": account.token_lifetime, "token_type": "Bearer"}
    return Response(orjson.dumps(body), media_type=JSON)


async def register(request: Request) -> Response:
    """Accept a service account: `{client_email, public_key (PEM), token_lifetime?, token_status?}`."""
    state: SimState = request.app.state.sim
    try:
        body = orjson.loads(await request.body())
        email, pem = body["client_email"], body["public_key"]
        key = load_pem_public_key(pem.encode())
    except (ValueError, KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
        return _grant_error("give client_email and public_key (PEM)", error="invalid_request")
    if not isinstance(key, rsa.RSAPublicKey):
        return _grant_error("public_key must be RSA", error="invalid_request")
    state.service_accounts[str(email)] = ServiceAccount(
        pem, int(body.get("token_lifetime", 3600)), body.get("token_status")
    )
    return Response(orjson.dumps({"accepted": email}), media_type=JSON)


async def issued(request: Request) -> Response:
    state: SimState = request.app.state.sim
    return Response(orjson.dumps(sorted(state.access_tokens)), media_type=JSON)


async def revoke(request: Request) -> Response:
    """Revoke every token issued (as a revoked or rotated credential would): the Vertex routes
    then answer 401 to a cached one, which the gateway must drop and mint again."""
    state: SimState = request.app.state.sim
    for value in state.access_tokens:
        state.access_tokens[value] = 0.0  # expired, still listed
    return Response(orjson.dumps({"revoked": True}), media_type=JSON)


def token_accepted(state: SimState, authorization: str | None) -> bool:
    """A live token this sim issued, as `Authorization: Bearer <token>`."""
    scheme, _, value = (authorization or "").partition(" ")
    expiry = state.access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None
    return expiry is not None and time.time() < expiry


def routes() -> list[Route]:
    return [
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route("/_sim/vertex/service-accounts", register, methods=["POST"]),
        Route("/_sim/vertex/tokens", issued, methods=["GET"]),
        Route("/_sim/vertex/tokens", revoke, methods=["DELETE"]),
    ]
