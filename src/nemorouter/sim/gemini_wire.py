"""The simulator's Gemini wire format: ``POST /{v1beta,v1}/models/{model}:generateContent`` and
``:streamGenerateContent`` (``?alt=sse``), in the shapes the official ``google-genai`` SDK parses.

Auth is Google's: the ``x-goog-api-key`` header or ``?key=``; with no configured keys any
``sk-sim-...`` key or real-looking ``AIza...`` key is accepted. An unknown key gets Google's real
answer, 400 INVALID_ARGUMENT with reason API_KEY_INVALID (not 401); a missing one, 403.
Directives: those of ``faults`` plus the Gemini-only ones of ``gemini_plan``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim.faults import Faults, collect_faults, dumps, sleep_ms, total_count
from nemorouter.sim.gemini_checks import GeminiBadRequest, validate
from nemorouter.sim.gemini_plan import Candidate, GeminiPlan, extra_directives, last_user_texts, plan
from nemorouter.sim.sse import CUT, SimStream
from nemorouter.sim.state import SimState
from nemorouter.sim.tokens import token_pieces

JSON = "application/json; charset=UTF-8"
GOOGLE_KEY_PREFIX = "AIza"
RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
STREAM_ERROR = {
    "error": {"code": 500, "message": "An internal error has occurred (simulated).", "status": "INTERNAL"}
}


def google_error(code: int, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    """Google's RPC error shape: ``{"error": {code, message, status, details?}}``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": RPC_STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return Response(orjson.dumps({"error": error}), status_code=code, media_type=JSON)


def _key_error(key: str | None) -> Response:
    if key is None:
        return google_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    info = {
        "@type": ERROR_INFO,
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    return google_error(400, "API key not valid. Please pass a valid API key.", [info])


def _fault(faults: Faults) -> Response:
    code = faults.status or 500
    if code == 429:
        details = (
            [{"@type": RETRY_INFO, "retryDelay": f"{faults.retry_after}s"}]
            if faults.retry_after is not None
            else None
        )
        return google_error(429, "Resource has been exhausted (e.g. check quota) (simulated).", details)
    if code >= 500:
        return google_error(code, f"The service is currently unavailable (simulated {code}).")
    if code == 401:
        return google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
            "or other valid authentication credential.",
        )
    if code == 403:  # e.g. a file or tuned model the caller may not read: the request's failure
        return google_error(403, "The caller does not have permission")
    return google_error(code, f"Simulated error {code}.")


def _key(request: Request, state: SimState) -> tuple[str | None, bool]:
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    accepted = state.key_accepted(key) or (
        state.accepted_keys is None and key is not None and key.startswith(GOOGLE_KEY_PREFIX)
    )
    return key, accepted


# -- bodies -----------------------------------------------------------------------------------


def _parts(candidate: Candidate) -> list[dict[str, Any]]:
    reply = candidate.reply
    parts: list[dict[str, Any]] = []
    if candidate.thought:
        parts.append({"text": candidate.thought, "thought": True})
    if reply.tool_name is not None and reply.finish_reason != "length":
        part: dict[str, Any] = {"functionCall": {"name": reply.tool_name, "args": candidate.args}}
        if candidate.signature:
            part["thoughtSignature"] = candidate.signature
        parts.append(part)
    elif reply.tool_name is None and reply.content:
        parts.append({"text": reply.content})
    return parts


def _content(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"parts": parts, "role": "model"} if parts else {"role": "model"}


def _head(model: str, response_id: str) -> dict[str, Any]:
    return {"modelVersion": model, "responseId": response_id}


def whole_body(p: GeminiPlan, model: str, no_usage: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.blocked:
        out["promptFeedback"] = {"blockReason": "SAFETY"}
    else:
        out["candidates"] = [
            {"content": _content(_parts(c)), "finishReason": c.finish_reason, "index": i}
            for i, c in enumerate(p.candidates)
        ]
    if not no_usage:
        out["usageMetadata"] = p.usage
    return {**out, **_head(model, secrets.token_urlsafe(16))}


def _pieces(candidate: Candidate) -> list[dict[str, Any]]:
    """The parts a stream sends, one event each: thought, then a token of text or a whole call."""
    parts = _parts(candidate)
    out = [p for p in parts if p.get("thought")]
    for part in parts:
        if part.get("thought"):
            continue
        if "text" in part:
            out.extend({"text": piece} for piece in token_pieces(part["text"]))
        else:
            out.append(part)
    return out


def stream_payloads(p: GeminiPlan, model: str, faults: Faults) -> list[bytes | None]:
    """Event payloads in order; ``None`` marks where content ends (for cut/error placement)."""
    head = _head(model, secrets.token_urlsafe(16))
    prompt = p.usage["promptTokenCount"]
    if p.blocked:
        last = whole_body(p, model, faults.no_usage)
        return [None, dumps(last)]
    per = [_pieces(c) for c in p.candidates]
    events: list[bytes | None] = []
    seen = 0
    for k in range(max(map(len, per), default=0)):
        for i, pieces in enumerate(per):
            if k < len(pieces):
                seen += 1 if "text" in pieces[k] and not pieces[k].get("thought") else 0
                event: dict[str, Any] = {"candidates": [{"content": _content([pieces[k]]), "index": i}]}
                if not faults.no_usage:  # running totals, as Google sends them
                    output = faults.output_count(seen)
                    running = {"promptTokenCount": prompt, "candidatesTokenCount": output}
                    total = total_count([prompt, output], p.prompt + seen)
                    event["usageMetadata"] = {**running, "totalTokenCount": total}
                events.append(dumps({**event, **head}))
    events.append(None)
    for i, c in enumerate(p.candidates):
        final: dict[str, Any] = {
            "candidates": [{"content": _content([{"text": ""}]), "finishReason": c.finish_reason, "index": i}]
        }
        if i == len(p.candidates) - 1 and not faults.no_usage:
            final["usageMetadata"] = p.usage
        events.append(dumps({**final, **head}))
    return events


async def sse_events(payloads: list[bytes | None], faults: Faults) -> AsyncIterator[bytes]:
    """``data: <GenerateContentResponse>`` events; the body's end is the stream's end (no [DONE])."""
    content = payloads[: payloads.index(None)]
    finals = payloads[payloads.index(None) + 1 :]
    cut_at, error_at = faults.cut_after, faults.error_after
    if cut_at is not None and error_at is not None and error_at < cut_at:
        cut_at = None
    for sent in range(len(content) + 1):
        at_end = sent == len(content)
        if cut_at is not None and (at_end or sent >= cut_at):
            yield CUT
            return
        if error_at is not None and (at_end or sent >= error_at):
            yield b"data: " + orjson.dumps(STREAM_ERROR) + b"\n\n"
            return
        if not at_end:
            if sent:
                await sleep_ms(faults.chunk_delay_ms)
            yield b"data: " + (content[sent] or b"") + b"\r\n\r\n"
            if sent == 0 and faults.malformed:
                yield b'data: {"candidates": [\r\n\r\n'
    for payload in finals:
        await sleep_ms(faults.chunk_delay_ms)
        yield b"data: " + (payload or b"") + b"\r\n\r\n"


# -- handlers ---------------------------------------------------------------------------------


async def _generate(request: Request, stream: bool) -> Response:
    state: SimState = request.app.state.sim
    raw = await request.body()
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    state.record(request, raw, parsed)
    state.requests[-1]["query"] = request.url.query  # shows whether a key travelled in the URL
    key, accepted = _key(request, state)
    if not accepted:
        return _key_error(key)
    return await answer(request, parsed, stream, lambda: _key_error(key or ""))


async def answer(request: Request, parsed: Any, stream: bool, refuse_key: Callable[[], Response]) -> Response:
    """The answer to an authenticated generateContent body (also Gemini on Vertex's, whose
    refusal of its credential `refuse_key` is another shape)."""
    if not isinstance(parsed, dict):
        return google_error(400, "Invalid JSON payload received.")
    texts = last_user_texts(parsed)
    faults = collect_faults(request.headers.get("x-sim"), texts)
    extra = extra_directives(request.headers.get("x-sim"), texts, faults)
    await sleep_ms(faults.latency_ms)
    if faults.bad_key:
        return refuse_key()
    if faults.status is not None:
        return _fault(faults)
    try:
        config, declarations = validate(parsed)
    except GeminiBadRequest as exc:
        return google_error(400, str(exc))
    model = request.path_params["model"]
    p = plan(parsed, model, config, declarations, faults, extra)
    if not stream:
        payload = dumps(whole_body(p, model, faults.no_usage))
        return Response(payload[: len(payload) // 2] if faults.malformed else payload, media_type=JSON)
    payloads = stream_payloads(p, model, faults)
    if request.query_params.get("alt") != "sse":  # without alt=sse Google streams one JSON array
        items = b",\r\n".join(x for x in payloads if x is not None)
        return Response(b"[" + items + b"]", media_type=JSON)
    return SimStream(sse_events(payloads, faults), headers={"cache-control": "no-cache"})


async def generate_content(request: Request) -> Response:
    return await _generate(request, stream=False)


async def stream_generate_content(request: Request) -> Response:
    return await _generate(request, stream=True)


def routes() -> list[Route]:
    """Both API versions: the gateway pins v1beta; google-genai 3.x defaults to v1."""
    out = []
    for version in ("v1beta", "v1"):
        out.append(Route(f"/{version}/models/{{model}}:generateContent", generate_content, methods=["POST"]))
        out.append(
            Route(
                f"/{version}/models/{{model}}:streamGenerateContent",
                stream_generate_content,
                methods=["POST"],
            )
        )
    return out
