"""OpenAI wire format for the sim: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/moderations``,
``/v1/rerank`` (and Voyage's at ``/voyage/v1/rerank``), ``/v1/models``.

Shapes follow what the official ``openai`` SDK parses; replies come from
``content`` and token counts from ``tokens`` so usage is exact and predictable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim import embeddings as emb
from nemorouter.sim import moderations as mod
from nemorouter.sim import rerank as rr
from nemorouter.sim.bad_chunks import BAD_CHUNKS
from nemorouter.sim.content import Reply, last_user_texts
from nemorouter.sim.faults import NO_FAULTS, Faults, collect_faults, dumps, sleep_ms
from nemorouter.sim.openai_plan import BadRequest, ChatPlan, plan_chat
from nemorouter.sim.sse import CUT, SimStream
from nemorouter.sim.state import SimState, bearer_key
from nemorouter.sim.tokens import token_pieces

JSON = "application/json"
FINGERPRINT = "fp_sim"
TOOL_ARG_FRAGMENT = 8
STREAM_ERROR_EVENT = (
    b'data: {"error": {"message": "The server had an error while streaming (simulated).", '
    b'"type": "server_error", "param": null, "code": 500}}\n\n'
)
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "o3-mini", "text-embedding-3-small", "text-embedding-3-large")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type=JSON)


def error_response(
    status: int,
    message: str,
    kind: str,
    code: str | int | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """OpenAI's error shape: ``{"error": {message, type, param, code}}``."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json_response(body, status, headers)


def fault_response(faults: Faults) -> Response:
    status = faults.status or 500
    headers = {"retry-after": str(faults.retry_after)} if faults.retry_after is not None else None
    if status == 429:
        return error_response(
            status,
            "Rate limit reached (simulated).",
            "rate_limit_exceeded",
            "rate_limit_exceeded",
            headers=headers,
        )
    if status >= 500:
        return error_response(
            status, f"The server had an error (simulated {status}).", "server_error", headers=headers
        )
    if status == 403:  # OpenAI's 403: the request's region or policy, not the key
        return error_response(
            403,
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
            headers=headers,
        )
    code = {401: "invalid_api_key", 404: "model_not_found"}.get(status)
    return error_response(
        status, f"Simulated error {status}.", "invalid_request_error", code, headers=headers
    )


def bad_key_response() -> Response:
    return error_response(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")


@dataclass
class Prelude:
    """What every OpenAI route does first: read, record, authenticate, parse, inject faults."""

    body: dict[str, Any]
    early: Response | None = None
    faults: Faults = NO_FAULTS


async def prelude(request: Request, inband: Callable[[dict[str, Any]], list[str]]) -> Prelude:
    """``inband`` picks the texts of the body where ``[sim:...]`` directives may appear."""
    state: SimState = request.app.state.sim
    raw = await request.body()
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    state.record(request, raw, parsed)
    # Azure OpenAI sends its key as `api-key`; everyone else as a bearer token.
    key = bearer_key(request.headers.get("authorization")) or request.headers.get("api-key")
    if not state.key_accepted(key):
        return Prelude({}, bad_key_response())
    if not isinstance(parsed, dict):
        return Prelude(
            {},
            error_response(400, "We could not parse the JSON body of your request.", "invalid_request_error"),
        )
    faults = collect_faults(request.headers.get("x-sim"), inband(parsed))
    await sleep_ms(faults.latency_ms)
    if faults.bad_key:
        return Prelude(parsed, bad_key_response())
    if faults.status is not None:
        return Prelude(parsed, fault_response(faults))
    return Prelude(parsed, faults=faults)


def bad_request(exc: BadRequest) -> Response:
    return error_response(400, str(exc), "invalid_request_error", param=exc.param)


# ----------------------------------------------------------------------------- chat: responses


def _message(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_name is not None:
        function = {"name": reply.tool_name, "arguments": reply.tool_arguments}
        message["tool_calls"] = [{"id": reply.tool_call_id, "type": "function", "function": function}]
    return message


def completion_body(plan: ChatPlan, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "message": _message(r), "finish_reason": r.finish_reason, "logprobs": None}
            for i, r in enumerate(plan.replies)
        ],
        "usage": plan.usage,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def _choice_deltas(reply: Reply) -> list[dict[str, Any]]:
    """Content deltas of one choice: one per token of text, or tool-call fragments."""
    if reply.tool_name is None:
        return [{"content": piece} for piece in token_pieces(reply.content or "")]
    first = {
        "index": 0,
        "id": reply.tool_call_id,
        "type": "function",
        "function": {"name": reply.tool_name, "arguments": ""},
    }
    args = reply.tool_arguments or ""
    fragments = [args[i : i + TOOL_ARG_FRAGMENT] for i in range(0, len(args), TOOL_ARG_FRAGMENT)]
    return [{"tool_calls": [first]}] + [
        {"tool_calls": [{"index": 0, "function": {"arguments": f}}]} for f in fragments
    ]


async def stream_events(plan: ChatPlan, body: dict[str, Any], faults: Faults) -> AsyncIterator[bytes]:
    """Chunks in order: roles, content (round-robin over choices), finishes, usage, ``[DONE]``."""
    head = {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": FINGERPRINT,
    }

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        return b"data: " + dumps({**head, "choices": choices, "usage": usage}) + b"\n\n"

    def choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}

    roles = [
        chunk([choice(i, {"role": "assistant", "content": "" if r.tool_name is None else None})])
        for i, r in enumerate(plan.replies)
    ]
    per_choice = [_choice_deltas(r) for r in plan.replies]
    content = [
        chunk([choice(i, deltas[k])])
        for k in range(max(map(len, per_choice)))
        for i, deltas in enumerate(per_choice)
        if k < len(deltas)
    ]
    finishes = [chunk([choice(i, {}, r.finish_reason)]) for i, r in enumerate(plan.replies)]
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True and not faults.no_usage:
        finishes.append(chunk([], plan.usage))
    cut_at, error_at = faults.cut_after, faults.error_after
    if cut_at is not None and error_at is not None and error_at < cut_at:
        cut_at = None

    for index, item in enumerate(roles):
        if index:
            await sleep_ms(faults.chunk_delay_ms)
        yield item
    if faults.malformed:
        yield (
            b'data: {"id": "'
            + head["id"].encode()
            + b'", "object": "chat.completion.chunk", "choices": [\n\n'
        )
    if faults.bad_chunk is not None:  # after the first content chunk (sim/bad_chunks.py)
        bad = b"data: " + dumps({**head, **BAD_CHUNKS[faults.bad_chunk]}) + b"\n\n"
        content = [*content[:1], bad, *content[1:]]
    for sent in range(len(content) + 1):
        at_end = sent == len(content)
        if cut_at is not None and (at_end or sent >= cut_at):
            yield CUT
            return
        if error_at is not None and (at_end or sent >= error_at):
            yield STREAM_ERROR_EVENT
            return
        if not at_end:
            await sleep_ms(faults.chunk_delay_ms)
            yield content[sent]
    for item in finishes:
        await sleep_ms(faults.chunk_delay_ms)
        yield item
    yield b"data: [DONE]\n\n"


async def chat_completions(request: Request) -> Response:
    pre = await prelude(request, lambda b: last_user_texts(b.get("messages")))
    if pre.early is not None:
        return pre.early
    faults = pre.faults
    try:
        plan = plan_chat(pre.body, faults)
    except BadRequest as exc:
        return bad_request(exc)
    if pre.body.get("stream") is True:
        headers = {"cache-control": "no-cache", "x-request-id": "req_" + secrets.token_hex(12)}
        return SimStream(stream_events(plan, pre.body, faults), headers=headers)
    payload = dumps(completion_body(plan, pre.body["model"]))
    if faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON, headers={"x-request-id": "req_" + secrets.token_hex(12)})


# ----------------------------------------------------------------------------- embeddings and models


async def embeddings(request: Request) -> Response:
    pre = await prelude(request, lambda b: emb.input_strings(b.get("input")))
    if pre.early is not None:
        return pre.early
    try:
        payload = orjson.dumps(emb.embeddings_body(pre.body))
    except emb.EmbeddingsError as exc:
        return error_response(400, str(exc), "invalid_request_error", param=exc.param)
    if pre.faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON)


async def moderations(request: Request) -> Response:
    pre = await prelude(request, lambda b: mod.input_strings(b.get("input")))
    if pre.early is not None:
        return pre.early
    try:
        payload = orjson.dumps(mod.moderation_body(pre.body))
    except mod.ModerationError as exc:
        return error_response(400, str(exc), "invalid_request_error", param="input")
    if pre.faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON)


async def _rerank(request: Request, voyage: bool, cohere: bool = False) -> Response:
    pre = await prelude(request, rr.input_strings)
    if pre.early is not None:
        return pre.early
    try:
        answer = rr.rerank_body(pre.body, voyage, cohere)
        if cohere:  # its one input count: what the prompt directives misreport here
            billed = answer["meta"]["billed_units"]
            billed["search_units"] = pre.faults.prompt_count(billed["search_units"])
        payload = orjson.dumps(answer)
    except rr.RerankError as exc:
        return error_response(400, str(exc), "invalid_request_error")
    if pre.faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON)


async def rerank(request: Request) -> Response:
    return await _rerank(request, voyage=False)


async def voyage_rerank(request: Request) -> Response:
    return await _rerank(request, voyage=True)


async def cohere_rerank(request: Request) -> Response:
    return await _rerank(request, voyage=False, cohere=True)


async def list_models(request: Request) -> Response:
    state: SimState = request.app.state.sim
    if not state.key_accepted(bearer_key(request.headers.get("authorization"))):
        return bad_key_response()
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "nemorouter-sim"} for m in MODELS]
    return json_response({"object": "list", "data": data})


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/moderations", moderations, methods=["POST"]),
        Route("/v1/rerank", rerank, methods=["POST"]),  # Cohere's and Jina's shape
        Route("/voyage/v1/rerank", voyage_rerank, methods=["POST"]),  # Voyage's
        Route("/cohere/v2/rerank", cohere_rerank, methods=["POST"]),  # Cohere's (search units)
        Route("/v1/models", list_models, methods=["GET"]),
        # Azure OpenAI's deployment URLs (the api-version query parameter is accepted, not checked).
        Route("/openai/deployments/{deployment}/chat/completions", chat_completions, methods=["POST"]),
        Route("/openai/deployments/{deployment}/embeddings", embeddings, methods=["POST"]),
    ]
