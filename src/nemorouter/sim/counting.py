"""The providers' free token-count endpoints, for the sim: Anthropic's
``POST /v1/messages/count_tokens`` (``{"input_tokens": n}``) and Gemini's
``POST /{version}/models/{model}:countTokens`` (``{"totalTokens": n}``).

Each counts with the same rule as its generate route's usage, so a count equals the prompt
tokens the next answer reports. Anthropic's body is a Messages body without ``max_tokens``;
Gemini's is ``{"contents": [...]}`` or ``{"generateContentRequest": {...}}`` (the real API's
two forms: only the second counts the system instruction and tools).

Their own faults, ``count_status`` and ``count_latency_ms`` (sim/faults.py), make a provider that
will not count (rate-limited, failing, slow) while the same prompt is answered normally.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim import anthropic_plan, gemini_plan
from nemorouter.sim.anthropic_wire import _fault_response, error_response
from nemorouter.sim.anthropic_wire import last_user_texts as anthropic_texts
from nemorouter.sim.faults import Faults, collect_faults, dumps, sleep_ms
from nemorouter.sim.gemini_wire import _fault, _key, _key_error, google_error
from nemorouter.sim.state import SimState, bearer_key

JSON = "application/json"
# What count_tokens accepts besides a Messages body's own fields, none of which it needs.
_ANTHROPIC_UNCOUNTED = ("max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata")


async def _body(request: Request) -> Any:
    state: SimState = request.app.state.sim
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    state.record(request, raw, body)
    return body


async def _count_fault(request: Request, texts: list[str]) -> Faults | None:
    """The count's own fault for this request, after its latency; None when it should count."""
    faults = collect_faults(request.headers.get("x-sim"), texts)
    await sleep_ms(faults.count_latency_ms)
    return replace(faults, status=faults.count_status) if faults.count_status is not None else None


async def anthropic_count(request: Request) -> Response:
    body = await _body(request)
    state: SimState = request.app.state.sim
    key = request.headers.get("x-api-key") or bearer_key(request.headers.get("authorization"))
    if not state.key_accepted(key):
        return error_response(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return error_response(400, "anthropic-version: header is required")
    if not isinstance(body, dict):
        return error_response(400, "The request body is not valid JSON.")
    fault = await _count_fault(request, anthropic_texts(body))
    if fault is not None:
        return _fault_response(fault)
    for name in _ANTHROPIC_UNCOUNTED:
        if name in body:
            return error_response(400, f"{name}: Extra inputs are not permitted")
    try:
        anthropic_plan.validate({**body, "max_tokens": 1 << 30})
    except anthropic_plan.Invalid as exc:
        return error_response(400, str(exc))
    return Response(dumps({"input_tokens": anthropic_plan.count_prompt_tokens(body)}), media_type=JSON)


async def gemini_count(request: Request) -> Response:
    body = await _body(request)
    key, accepted = _key(request, request.app.state.sim)
    if not accepted:
        return _key_error(key)
    if not isinstance(body, dict):
        return google_error(400, "Invalid JSON payload received.")
    whole = body.get("generateContentRequest")
    counted = whole if isinstance(whole, dict) else {"contents": body.get("contents")}
    if not isinstance(counted.get("contents"), list) or not counted["contents"]:
        return google_error(400, "contents is not specified")
    fault = await _count_fault(request, gemini_plan.last_user_texts(counted))
    if fault is not None:
        return _fault(fault)
    return Response(dumps({"totalTokens": gemini_plan.count_prompt_tokens(counted)}), media_type=JSON)


def routes() -> list[Route]:
    out = [Route("/v1/messages/count_tokens", anthropic_count, methods=["POST"])]
    for version in ("v1beta", "v1"):
        out.append(Route(f"/{version}/models/{{model}}:countTokens", gemini_count, methods=["POST"]))
    return out
