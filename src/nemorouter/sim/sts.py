"""AWS STS's ``AssumeRole`` as the simulator answers it, at ``POST /sts/`` (botocore's `sts` client
with ``endpoint_url=<sim>/sts``): the query protocol's form body in, its XML out.

The caller must sign for the service ``sts`` with a key the Bedrock routes know
(sim/bedrock_auth.py). A role whose name starts with ``denied`` is refused as a role the key
may not assume (403 ``AccessDenied``); a role named ``short-N`` gives credentials that expire in
N seconds (STS's own minimum is 900, too long for a test); any other role gives credentials for
``DurationSeconds`` (3600 by default), which the Bedrock routes take until they expire.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim.bedrock_auth import verify
from nemorouter.sim.state import SimState

_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
# Bedrock's error types (sim/bedrock_auth.py) -> STS's codes for the same refusal.
_STS_CODES = {
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "UnrecognizedClientException": "InvalidClientTokenId",
    "ExpiredTokenException": "ExpiredToken",
    "MissingAuthenticationTokenException": "MissingAuthenticationToken",
}
_ROLE = re.compile(r"arn:aws(-[a-z]+)*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)")


def _xml(status: int, body: str) -> Response:
    return Response(body, status_code=status, media_type="text/xml")


def _error(status: int, code: str, message: str) -> Response:
    return _xml(
        status,
        f'<ErrorResponse xmlns="{_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{secrets.token_hex(16)}</RequestId>"
        "</ErrorResponse>",
    )


async def sts(request: Request) -> Response:
    state: SimState = request.app.state.sim
    body = await request.body()
    state.record(request, body, None)
    refused = await verify(request, body, state, service="sts")
    if refused is not None:  # Bedrock's JSON error, said as STS says it: XML, its own codes
        code = refused.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
        message = orjson.loads(bytes(refused.body))["message"]
        return _error(refused.status_code, _STS_CODES.get(code, code), message)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    if form.get("Action") != "AssumeRole":
        return _error(400, "InvalidAction", "Could not find operation " + form.get("Action", "")[:40])
    found = _ROLE.fullmatch(form.get("RoleArn", ""))
    if found is None or not form.get("RoleSessionName"):
        return _error(400, "ValidationError", "RoleArn and RoleSessionName are required")
    account, name = found.group(2), found.group(3)
    if name.startswith("denied"):
        return _error(
            403, "AccessDenied", f"User is not authorized to perform: sts:AssumeRole on {form['RoleArn']}"
        )
    short = re.fullmatch(r"short-(\d{1,4})", name)
    lifetime = int(short.group(1)) if short else int(form.get("DurationSeconds") or 3600)
    key_id = "ASIASIM" + secrets.token_hex(8).upper()
    secret, token = secrets.token_urlsafe(30), "FwoSIM" + secrets.token_urlsafe(60)
    expires = time.time() + lifetime
    state.aws_sessions[key_id] = (secret, token, expires)
    stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    session = escape(form["RoleSessionName"])
    return _xml(
        200,
        f'<AssumeRoleResponse xmlns="{_NS}"><AssumeRoleResult><Credentials>'
        f"<AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
        f"<SessionToken>{token}</SessionToken><Expiration>{stamp}</Expiration></Credentials>"
        f"<AssumedRoleUser><AssumedRoleId>AROASIM{account}:{session}</AssumedRoleId>"
        f"<Arn>arn:aws:sts::{account}:assumed-role/{escape(name)}/{session}</Arn></AssumedRoleUser>"
        f"</AssumeRoleResult><ResponseMetadata><RequestId>{secrets.token_hex(16)}</RequestId>"
        "</ResponseMetadata></AssumeRoleResponse>",
    )


def routes() -> list[Route]:
    return [Route("/sts/", sts, methods=["POST"]), Route("/sts", sts, methods=["POST"])]
