"""Bedrock's errors -> `Failure`s: an HTTP answer's, and an exception message inside a stream.

AWS's restJson1 protocol names the error in the `x-amzn-ErrorType` header
(`ThrottlingException:http://internal.amazon.com/...`: the part before `:`), or in the body's
`__type` (`com.amazonaws...#ThrottlingException`: the part after `#`), or `code`; the body's
`message` (or `Message`) says why. botocore's RestJSONParser reads them in that order. Inside a
ConverseStream the same errors come as exception messages named in lowerCamelCase.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from nemorouter.providers.types import Failure, FailureKind

# (kind, retryable) per error name. Sources: AWS API reference "Converse" and "ConverseStream",
# Errors sections, and "Common Errors" (the auth errors every AWS API shares).
_RULES: dict[str, tuple[FailureKind, bool]] = {
    # 429 "Your request was denied due to exceeding the account quotas": our key's rate limit.
    "ThrottlingException": (FailureKind.RATE_LIMITED, True),
    # 400 "Your request exceeds the service quota for your account": the key's account quota;
    # another key (another account) may serve.
    "ServiceQuotaExceededException": (FailureKind.RATE_LIMITED, True),
    # 429 "The model specified in the request is not ready to serve inference requests" (the
    # AWS SDK retries it): the model's capacity, not our key's limit.
    "ModelNotReadyException": (FailureKind.OVERLOADED, True),
    # 503 "The service isn't currently available."
    "ServiceUnavailableException": (FailureKind.OVERLOADED, True),
    # 500 "An internal server error occurred."
    "InternalServerException": (FailureKind.SERVER, True),
    # 424 "The request failed due to an error while processing the model."
    "ModelErrorException": (FailureKind.SERVER, True),
    # In a stream: "An error occurred while streaming the response" (with the model's status).
    "ModelStreamErrorException": (FailureKind.SERVER, True),
    # 408 "The request took too long to process."
    "ModelTimeoutException": (FailureKind.TIMEOUT, True),
    # 400 "The input fails to satisfy the constraints specified by Amazon Bedrock."
    "ValidationException": (FailureKind.INVALID, False),
    # 404 "The specified resource ARN was not found" (a model id this region does not serve).
    "ResourceNotFoundException": (FailureKind.INVALID, False),
    # 403 "The request is denied because you do not have sufficient permissions" (no access to
    # this model granted in the account, an IAM policy): the request's, not the key's validity.
    "AccessDeniedException": (FailureKind.FORBIDDEN, False),
    # Common Errors, 403: "The X.509 certificate or AWS access key ID provided does not exist in
    # our records" / "The security token included in the request is invalid": the key is bad.
    "UnrecognizedClientException": (FailureKind.AUTH, True),
    # 403 "The request signature we calculated does not match the signature you provided. Check
    # your AWS Secret Access Key": the secret does not belong to the access key id.
    "InvalidSignatureException": (FailureKind.AUTH, True),
    "SignatureDoesNotMatch": (FailureKind.AUTH, True),
    "InvalidClientTokenId": (FailureKind.AUTH, True),
    # 403 "The security token included in the request is expired": a session key past its life.
    "ExpiredTokenException": (FailureKind.AUTH, True),
    "MissingAuthenticationTokenException": (FailureKind.AUTH, True),
}
# Common Errors' text for a rejected credential, whatever the type says.
_BAD_KEY_TEXT = (
    "security token included in the request is invalid",
    "security token included in the request is expired",
)


def error_name(headers: Mapping[str, str], body: Any) -> str:
    """The error's type name, as botocore finds it: header, then `__type`, then `code`."""
    named = headers.get("x-amzn-errortype") or ""
    if not named and isinstance(body, dict):
        named = str(body.get("__type") or body.get("code") or "")
        named = named.rsplit("#", 1)[-1]
    return named.split(":", 1)[0].strip()


def _message(body: Any, status: int) -> str:
    if isinstance(body, dict):
        for field in ("message", "Message"):
            if isinstance(body.get(field), str) and body[field]:
                return str(body[field])[:500]
    return f"upstream error {status}"


def failure(name: str, status: int, message: str, retry_after: int | None = None) -> Failure:
    """Classify a named Bedrock error; an unknown name by its HTTP status."""
    rule = _RULES.get(name)
    if rule is None and status == 403 and any(text in message.lower() for text in _BAD_KEY_TEXT):
        rule = (FailureKind.AUTH, True)
    if rule is None:
        rule = _by_status(status)
    kind, retryable = rule
    status = 429 if kind is FailureKind.RATE_LIMITED else status
    return Failure(kind, status, message, retryable, retry_after if retryable else None)


def _by_status(status: int) -> tuple[FailureKind, bool]:
    if status == 429:
        return FailureKind.RATE_LIMITED, True
    if status == 401:
        return FailureKind.AUTH, True
    if status == 403:
        return FailureKind.FORBIDDEN, False
    if status == 408 or status >= 500:
        return FailureKind.SERVER, True
    return FailureKind.INVALID, False


def error_from_answer(
    status: int, body: bytes, retry_after: int | None, headers: Mapping[str, str]
) -> Failure:
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    return failure(error_name(headers, parsed), status, _message(parsed, status), retry_after)


def error_from_response(status: int, body: bytes, retry_after: int | None) -> Failure:
    """Without the headers (the Adapter's required form): the body's `__type`, else the status."""
    return error_from_answer(status, body, retry_after, {})


# A stream's exception names are the members of ConverseStreamOutput (lowerCamelCase); their
# HTTP status when answered whole, for a message that names none.
_STREAM_STATUS = {
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "ValidationException": 400,
    "InternalServerException": 500,
    "ModelStreamErrorException": 500,
}


def stream_failure(event: str, body: Any) -> Failure:
    """An exception message inside a 200 stream (`throttlingException`, ...)."""
    name = event[:1].upper() + event[1:]
    status = _STREAM_STATUS.get(name, 500)
    return failure(name, status, _message(body, status))
