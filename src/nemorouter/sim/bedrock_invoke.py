"""The simulator's Bedrock InvokeModel for Claude: ``POST /model/{modelId}/invoke`` and
``/invoke-with-response-stream``, what ``anthropic.AnthropicBedrock`` calls.

The body is Anthropic's Messages body without ``model`` and ``stream``, with
``anthropic_version`` (Bedrock's ``bedrock-2023-05-31``, or the API version the SDK pins) and
``anthropic_beta`` (a list) if any; the answer
is Anthropic's message, usage in Anthropic's conventions. The stream is AWS's event-stream
framing whose ``chunk`` events carry each Anthropic stream event as base64 JSON in ``bytes``
(AWS API reference, "InvokeModelWithResponseStream"; the SDK's ``AWSEventStreamDecoder`` reads
them). SigV4, the fault directives and AWS's errors are those of the Converse routes.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim import bedrock_frames
from nemorouter.sim.anthropic_plan import Extras, Invalid, plan_message
from nemorouter.sim.anthropic_wire import last_user_texts, message_body, stream_events
from nemorouter.sim.bedrock_auth import JSON, aws_error, verify
from nemorouter.sim.bedrock_wire import bad_key, fault
from nemorouter.sim.content import inband_directives, parse_pairs
from nemorouter.sim.faults import NO_FAULTS, Faults, sleep_ms
from nemorouter.sim.sse import CUT, SimStream
from nemorouter.sim.state import SimState

BEDROCK_VERSION = "bedrock-2023-05-31"
CLASSIC_VERSION = "2023-06-01"  # the Messages API version Bedrock's Claude answers as


async def _chunks(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Each SSE frame of the Messages stream as a `chunk` event (its data line, base64)."""
    async for frame in frames:
        if frame is CUT:
            yield CUT
            return
        data = next((line[6:] for line in frame.split(b"\n") if line.startswith(b"data: ")), b"")
        payload = orjson.dumps({"bytes": base64.b64encode(data).decode()})
        yield bedrock_frames.event("chunk", payload)


async def _invoke(request: Request, stream: bool) -> Response:
    state: SimState = request.app.state.sim
    raw = await request.body()
    try:
        body: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    state.record(request, raw, body)
    refused = await verify(request, raw, state)
    if refused is not None:
        return refused
    model = request.path_params["model"]
    version = body.get("anthropic_version") if isinstance(body, dict) else None
    if not isinstance(version, str) or not version:
        return aws_error(400, "ValidationException", "Malformed input request: anthropic_version is required")
    assert isinstance(body, dict)
    if "model" in body or "stream" in body:
        return aws_error(
            400, "ValidationException", "Malformed input request: extraneous key is not permitted"
        )
    messages = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
    messages["model"] = model
    directives = inband_directives(last_user_texts(messages))
    header = request.headers.get("x-sim")
    if header:
        directives.update(parse_pairs(header))
    faults = Faults.from_directives(directives) if directives else NO_FAULTS
    await sleep_ms(faults.latency_ms)
    if faults.bad_key:
        return bad_key()
    if faults.status is not None:
        return fault(faults)
    try:
        version = CLASSIC_VERSION if version == BEDROCK_VERSION else version
        plan = plan_message(messages, faults, Extras.from_directives(directives), version)
    except Invalid as exc:
        return aws_error(400, "ValidationException", str(exc))
    if stream:
        frames = stream_events(plan, model, faults)
        return SimStream(_chunks(frames), media_type=bedrock_frames.CONTENT_TYPE)
    return Response(orjson.dumps(message_body(plan, model)), media_type=JSON)


async def invoke(request: Request) -> Response:
    return await _invoke(request, stream=False)


async def invoke_stream(request: Request) -> Response:
    return await _invoke(request, stream=True)


def routes() -> list[Route]:
    return [
        Route("/model/{model}/invoke", invoke, methods=["POST"]),
        Route("/model/{model}/invoke-with-response-stream", invoke_stream, methods=["POST"]),
    ]
