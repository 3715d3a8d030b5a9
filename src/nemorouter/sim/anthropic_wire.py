"""Anthropic wire format for the sim: ``POST /v1/messages``.

Shapes follow what the official ``anthropic`` SDK parses: the message body, the typed
event stream (``event:`` lines, ``message_start`` ... ``message_stop``, one ``ping``), and
``{"type":"error","error":{type,message}}`` errors. Any ``anthropic-version`` is accepted and
the key may come as ``x-api-key`` (classic) or ``Authorization: Bearer`` (SDK 2.x).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim.anthropic_plan import Extras, Invalid, Plan, plan_message
from nemorouter.sim.content import inband_directives, parse_pairs
from nemorouter.sim.faults import NO_FAULTS, Faults, dumps, sleep_ms
from nemorouter.sim.sse import CUT, SimStream
from nemorouter.sim.state import SimState, bearer_key
from nemorouter.sim.tokens import token_pieces

JSON = "application/json"
TOOL_ARG_FRAGMENT = 8
# HTTP status -> Anthropic's error.type (docs.claude.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _request_id() -> str:
    return "req_" + secrets.token_hex(12)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    request_id = _request_id()
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return Response(
        orjson.dumps(body), status, headers={**(headers or {}), "request-id": request_id}, media_type=JSON
    )


def _fault_response(faults: Faults) -> Response:
    status = faults.status or 500
    headers = {"retry-after": str(faults.retry_after)} if faults.retry_after is not None else None
    message = {
        401: "invalid x-api-key",
        403: "Your API key does not have permission to use the specified resource.",
        429: "Number of requests has exceeded your rate limit (simulated).",
        529: "Overloaded",
    }
    return error_response(status, message.get(status, f"Simulated error {status}."), headers)


def last_user_texts(body: dict[str, Any]) -> list[str]:
    """Text of the last ``user`` turn that has text: where directives live.

    A turn of only ``tool_result`` blocks is skipped, as the OpenAI routes skip ``tool``
    messages, so a directive in the question still applies after the tool results.
    """
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return [content]
        texts = [
            b["text"]
            for b in content or []
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        if texts or not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content or []):
            return texts
    return []


# ----------------------------------------------------------------------------- bodies and streams


def message_body(plan: Plan, model: str) -> dict[str, Any]:
    return {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": plan.blocks,
        "stop_reason": plan.stop_reason,
        "stop_sequence": plan.stop_sequence,
        "usage": plan.usage,
    }


def _frame(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps({"type": name, **payload}) + b"\n\n"


def _block_frames(index: int, block: dict[str, Any], tool_json: str) -> list[tuple[bytes, bool]]:
    """One block as start, deltas, stop; the flag marks content deltas (what ``*_after`` counts)."""
    kind = block["type"]
    start: dict[str, Any]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in token_pieces(block["thinking"])]
        extra = [{"type": "signature_delta", "signature": block["signature"]}]
    elif kind == "tool_use":
        start = {**block, "input": {}}
        step = TOOL_ARG_FRAGMENT
        pieces = [tool_json[i : i + step] for i in range(0, len(tool_json), step)]
        deltas, extra = [{"type": "input_json_delta", "partial_json": p} for p in pieces], []
    else:
        start = {"type": "text", "text": ""}
        deltas, extra = [{"type": "text_delta", "text": p} for p in token_pieces(block["text"])], []
    frames = [(_frame("content_block_start", {"index": index, "content_block": start}), False)]
    frames += [(_frame("content_block_delta", {"index": index, "delta": d}), True) for d in deltas]
    frames += [(_frame("content_block_delta", {"index": index, "delta": d}), False) for d in extra]
    frames.append((_frame("content_block_stop", {"index": index}), False))
    return frames


STREAM_ERROR = _frame("error", {"error": {"type": "overloaded_error", "message": "Overloaded (simulated)."}})
PING = _frame("ping", {})


async def stream_events(plan: Plan, model: str, faults: Faults) -> AsyncIterator[bytes]:
    """message_start, (block start, ping once, deltas, stop)..., message_delta, message_stop."""
    head = {**message_body(plan, model), "content": [], "stop_reason": None, "stop_sequence": None}
    usage = plan.usage
    head["usage"] = {**usage, "output_tokens": plan.start_output}
    head["usage"].pop("output_tokens_details", None)
    frames: list[tuple[bytes, bool]] = []
    for index, block in enumerate(plan.blocks):
        frames += _block_frames(index, block, plan.tool_json)
        if index == 0:
            frames.insert(1, (PING, False))
    final = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    final["output_tokens"] = usage["output_tokens"]
    if "output_tokens_details" in usage:
        final["output_tokens_details"] = usage["output_tokens_details"]
    delta = {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence}
    ending = [_frame("message_delta", {"delta": delta, "usage": final}), _frame("message_stop", {})]
    cut_at, error_at = faults.cut_after, faults.error_after
    if cut_at is not None and error_at is not None and error_at < cut_at:
        cut_at = None

    yield _frame("message_start", {"message": head})
    if faults.malformed:
        yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": \n\n'
    sent = 0
    for frame, counts in [*frames, (b"", True)]:
        at_end = frame == b""
        if counts and cut_at is not None and (at_end or sent >= cut_at):
            yield CUT
            return
        if counts and error_at is not None and (at_end or sent >= error_at):
            yield STREAM_ERROR
            return
        if not at_end:
            await sleep_ms(faults.chunk_delay_ms)
            yield frame
            sent += counts
    for frame in ending:
        await sleep_ms(faults.chunk_delay_ms)
        yield frame


# ----------------------------------------------------------------------------- the route


async def messages(request: Request) -> Response:
    state: SimState = request.app.state.sim
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    state.record(request, raw, body)
    key = request.headers.get("x-api-key") or bearer_key(request.headers.get("authorization"))
    if not state.key_accepted(key):
        return error_response(401, "invalid x-api-key")
    version = request.headers.get("anthropic-version")
    if not version:
        return error_response(400, "anthropic-version: header is required")
    if not isinstance(body, dict):
        return error_response(400, "The request body is not valid JSON.")
    return await answer(request, body, version)


async def answer(request: Request, body: dict[str, Any], version: str) -> Response:
    """The answer to an authenticated Messages body (also Claude on Vertex's, sim/vertex_wire.py)."""
    directives = inband_directives(last_user_texts(body))
    header = request.headers.get("x-sim")
    if header:
        directives.update(parse_pairs(header))
    faults = Faults.from_directives(directives) if directives else NO_FAULTS
    await sleep_ms(faults.latency_ms)
    if faults.bad_key:
        return error_response(401, "invalid x-api-key")
    if faults.status is not None:
        return _fault_response(faults)
    try:
        plan = plan_message(body, faults, Extras.from_directives(directives), version)
    except Invalid as exc:
        return error_response(400, str(exc))
    headers = {"request-id": _request_id()}
    if body.get("stream") is True:
        return SimStream(
            stream_events(plan, body["model"], faults), headers={**headers, "cache-control": "no-cache"}
        )
    payload = dumps(message_body(plan, body["model"]))
    if faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON, headers=headers)


def routes() -> list[Route]:
    return [Route("/v1/messages", messages, methods=["POST"])]
