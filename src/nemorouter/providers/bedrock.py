"""The AWS Bedrock adapter (kind `bedrock`): the Converse API, signed with SigV4.

`POST {base_url}/model/{modelId}/converse` and `/converse-stream` (AWS API reference, Amazon
Bedrock Runtime); `base_url` defaults to `https://bedrock-runtime.{region}.amazonaws.com`, the
provider's `config.region` being required. The request body is `bedrock_request`'s, answers
and usage `bedrock_response`'s, the stream `bedrock_stream`'s (in AWS's event-stream framing,
which the engine decodes), errors `bedrock_errors`' and the signature `bedrock_signing`'s.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson

from nemorouter.providers import bedrock_signing
from nemorouter.providers.adapter import Adapter
from nemorouter.providers.bedrock_errors import error_from_answer, error_from_response
from nemorouter.providers.bedrock_request import converse_body
from nemorouter.providers.bedrock_response import chat_response
from nemorouter.providers.bedrock_stream import stream_decoder
from nemorouter.providers.bedrock_sts import AWS_ROLE
from nemorouter.providers.types import EVENT_STREAM, SSE, UnsupportedContent, Upstream, UpstreamRequest

# An AWS region name: us-east-1, eu-central-2, ap-southeast-3, us-gov-west-1, ...
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def default_base_url(region: str) -> str:
    """Bedrock Runtime's regional endpoint (AWS General Reference, "Amazon Bedrock endpoints")."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def chat_url(upstream: Upstream, stream: bool) -> str:
    # The model id is one path segment, encoded whole (`anthropic.claude-...-v1:0` -> `%3A0`),
    # as botocore encodes the modelId label; the signature covers that encoded path.
    action = "converse-stream" if stream else "converse"
    return f"{upstream.base_url.rstrip('/')}/model/{quote(upstream.model, safe='')}/{action}"


def chat_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    stream = bool(body.get("stream"))
    region = upstream.config.get("region")
    if not isinstance(region, str) or REGION.fullmatch(region) is None:
        raise UnsupportedContent("this Bedrock provider has no valid `config.region`")
    try:
        key = bedrock_signing.credentials(upstream.secret)
    except ValueError:
        # Checked when it was added, so only a secret stored some other way; never echoed.
        raise UnsupportedContent("this Bedrock provider's vault key is not an AWS credential") from None
    url = chat_url(upstream, stream)
    payload = orjson.dumps(converse_body(body, upstream.max_output))
    headers = bedrock_signing.signed_headers(url, payload, region, key)
    return UpstreamRequest(url, headers, payload, stream, EVENT_STREAM if stream else SSE)


ADAPTER = Adapter(
    chat_request=chat_request,
    chat_response=chat_response,
    stream_decoder=stream_decoder,
    error_from_response=error_from_response,
    error_from_answer=error_from_answer,
    minter=AWS_ROLE,  # a key with a role_arn signs with the role's credentials (bedrock_sts.py)
)
