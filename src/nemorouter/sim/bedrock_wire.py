"""The simulator's Bedrock Runtime wire: ``POST /model/{modelId}/converse`` and
``/converse-stream``, in the shapes boto3's ``bedrock-runtime`` client parses, SigV4-checked
(bedrock_auth.py). The stream is AWS's binary event-stream framing (bedrock_frames.py).

Directives: those of ``faults`` (as the Messages route reads them, from the last user turn's
text or the ``x-sim`` header). ``status`` answers AWS's error for that status (429
ThrottlingException, 503 ServiceUnavailableException, 500 InternalServerException, 424
ModelErrorException, 408 ModelTimeoutException, 400 ValidationException, 403
AccessDeniedException, 404 ResourceNotFoundException); ``bad_key=1`` is 403
UnrecognizedClientException; in a stream ``error_after`` sends an ``internalServerException``
message, ``throttle_after=N`` (Bedrock's own) a ``throttlingException`` one, and ``malformed``
one message whose CRC is wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim import bedrock_frames
from nemorouter.sim.anthropic_plan import Extras, Invalid, Plan, plan_message
from nemorouter.sim.anthropic_wire import last_user_texts
from nemorouter.sim.bedrock_auth import JSON, aws_error, verify
from nemorouter.sim.bedrock_plan import messages_body, stream_events, usage, whole_body
from nemorouter.sim.content import inband_directives, parse_pairs
from nemorouter.sim.faults import NO_FAULTS, Faults, sleep_ms
from nemorouter.sim.sse import CUT, SimStream
from nemorouter.sim.state import SimState

CLASSIC_VERSION = "2023-06-01"  # the plan's usage without Anthropic's newer output details
# HTTP status -> the Bedrock error sent with it (AWS API reference, "Converse", Errors).
FAULTS = {
    400: ("ValidationException", "The provided request is not valid (simulated)."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found (simulated)."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request (simulated)."),
    424: ("ModelErrorException", "The model encountered an error processing the request (simulated)."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request (simulated)."),
}


def bad_key() -> Response:
    """AWS's answer to a key it does not take (it has no 401)."""
    return aws_error(
        403, "UnrecognizedClientException", "The security token included in the request is invalid."
    )


def fault(faults: Faults) -> Response:
    status = faults.status or 500
    if status == 401:  # AWS has no 401: a key it does not take is its 403
        return aws_error(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    kind, message = FAULTS.get(status, ("InternalServerException", f"Simulated error {status}."))
    headers = {"retry-after": str(faults.retry_after)} if faults.retry_after is not None else None
    return aws_error(status, kind, message, headers)


def _json(event_type: str, payload: dict[str, Any]) -> bytes:
    return bedrock_frames.event(event_type, orjson.dumps(payload))


async def _stream(plan: Plan, faults: Faults, throttle_after: int | None) -> AsyncIterator[bytes]:
    events = stream_events(plan)
    sent = 0
    for event_type, payload, counts in events:
        if counts:
            if faults.cut_after is not None and sent >= faults.cut_after:
                yield CUT
                return
            for at, kind in (
                (faults.error_after, "internalServerException"),
                (throttle_after, "throttlingException"),
            ):
                if at is not None and sent >= at:
                    yield bedrock_frames.exception(kind, orjson.dumps({"message": "Simulated stream error."}))
                    return
            if sent:
                await sleep_ms(faults.chunk_delay_ms)
            sent += 1
        frame = _json(event_type, payload)
        yield frame
        if sent == 1 and counts and faults.malformed:
            bad = _json("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
            yield bad[:-1] + bytes([bad[-1] ^ 0xFF])  # the message CRC broken
    if faults.cut_after is not None:
        yield CUT
        return
    for at, kind in (
        (faults.error_after, "internalServerException"),
        (throttle_after, "throttlingException"),
    ):
        if at is not None:
            yield bedrock_frames.exception(kind, orjson.dumps({"message": "Simulated stream error."}))
            return
    yield _json("messageStop", {"stopReason": plan.stop_reason})
    tail: dict[str, Any] = {"metrics": {"latencyMs": faults.latency_ms or 1}}
    if not faults.no_usage:
        tail["usage"] = usage(plan, faults)
    yield _json("metadata", tail)


async def _converse(request: Request, stream: bool) -> Response:
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
    if not isinstance(body, dict):
        return aws_error(
            400, "ValidationException", "Malformed input request, please reformat your input and try again."
        )
    model = request.path_params["model"]
    try:
        messages = messages_body(body, model)
    except Invalid as exc:
        return aws_error(400, "ValidationException", str(exc))
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
        plan = plan_message(messages, faults, Extras.from_directives(directives), CLASSIC_VERSION)
    except Invalid as exc:
        return aws_error(400, "ValidationException", str(exc))
    if stream:
        throttle = directives.get("throttle_after")
        throttle_after = int(throttle) if throttle is not None and throttle.isdigit() else None
        return SimStream(_stream(plan, faults, throttle_after), media_type=bedrock_frames.CONTENT_TYPE)
    payload = orjson.dumps(whole_body(plan, faults))
    if faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON)


async def converse(request: Request) -> Response:
    return await _converse(request, stream=False)


async def converse_stream(request: Request) -> Response:
    return await _converse(request, stream=True)


def routes() -> list[Route]:
    return [
        Route("/model/{model}/converse", converse, methods=["POST"]),
        Route("/model/{model}/converse-stream", converse_stream, methods=["POST"]),
    ]
