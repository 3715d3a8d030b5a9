"""Vertex AI's model routes, as the sim plays them: Gemini and Claude inside a project and location.

- `POST /{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`
  and `:streamGenerateContent` (`?alt=sse`): the Gemini wire (sim/gemini_wire.py), same content,
  usage and fault directives. The gateway pins `v1`; google-genai defaults to `v1beta1` on Vertex.
- `POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict` and
  `:streamRawPredict`: the Messages wire (sim/anthropic_wire.py) with the model in the URL, no
  `model` in the body (anthropic's Vertex client moves it to the URL) and
  `anthropic_version` in the body instead of the header: `vertex-2023-10-16` (Vertex's own name
  for the classic 2023-06-01 API, what the gateway sends) or a dated Messages API version (the
  anthropic SDK 2.x sends its own, e.g. `2026-10-21`).

Every route takes only `Authorization: Bearer <token>` with a live token of this sim's token
endpoint (sim/vertex_auth.py); anything else is Google's 401 UNAUTHENTICATED.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim import anthropic_wire, gemini_wire
from nemorouter.sim.state import SimState
from nemorouter.sim.vertex_auth import token_accepted

ANTHROPIC_VERSION = "vertex-2023-10-16"
# Usage in Anthropic's classic shape (no output_tokens_details), as the 2023-06-01 API answers.
CLASSIC_VERSION = "2023-06-01"
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")
_MODELS = "/projects/{project}/locations/{location}/publishers"


def unauthenticated() -> Response:
    return gemini_wire.google_error(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    )


async def _read(request: Request) -> tuple[SimState, Any, bool]:
    state: SimState = request.app.state.sim
    raw = await request.body()
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    state.record(request, raw, parsed)
    state.requests[-1]["query"] = request.url.query
    return state, parsed, token_accepted(state, request.headers.get("authorization"))


async def _gemini(request: Request, stream: bool) -> Response:
    _, parsed, authorized = await _read(request)
    if not authorized:
        return unauthenticated()
    return await gemini_wire.answer(request, parsed, stream, unauthenticated)


async def generate_content(request: Request) -> Response:
    return await _gemini(request, stream=False)


async def stream_generate_content(request: Request) -> Response:
    return await _gemini(request, stream=True)


async def _claude(request: Request, stream: bool) -> Response:
    _, body, authorized = await _read(request)
    if not authorized:
        return unauthenticated()
    if not isinstance(body, dict):
        return anthropic_wire.error_response(400, "The request body is not valid JSON.")
    version = body.get("anthropic_version")
    if version == ANTHROPIC_VERSION:
        version = CLASSIC_VERSION
    if not isinstance(version, str) or not _DATED.fullmatch(version):
        return anthropic_wire.error_response(400, f"anthropic_version: Input should be '{ANTHROPIC_VERSION}'")
    if "model" in body:  # the model is the URL's
        return anthropic_wire.error_response(400, "model: Extra inputs are not permitted")
    if bool(body.get("stream")) is not stream:
        return anthropic_wire.error_response(
            400, "stream must match the method (rawPredict or streamRawPredict)"
        )
    inner = {k: v for k, v in body.items() if k != "anthropic_version"}
    inner["model"] = request.path_params["model"]
    return await anthropic_wire.answer(request, inner, version)


async def raw_predict(request: Request) -> Response:
    return await _claude(request, stream=False)


async def stream_raw_predict(request: Request) -> Response:
    return await _claude(request, stream=True)


def routes() -> list[Route]:
    out = [
        Route(f"/v1{_MODELS}/anthropic/models/{{model}}:rawPredict", raw_predict, methods=["POST"]),
        Route(
            f"/v1{_MODELS}/anthropic/models/{{model}}:streamRawPredict", stream_raw_predict, methods=["POST"]
        ),
    ]
    for version in ("v1", "v1beta1"):
        base = f"/{version}{_MODELS}/google/models/{{model}}"
        out.append(Route(f"{base}:generateContent", generate_content, methods=["POST"]))
        out.append(Route(f"{base}:streamGenerateContent", stream_generate_content, methods=["POST"]))
    return out
