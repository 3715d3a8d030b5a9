"""The inference API's reads: key, generation (models in `models_api`; chat and embeddings live in `fast`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.app import models_api
from nemorouter.app.http import json_response
from nemorouter.errors import InvalidRequest, NotFound
from nemorouter.service.administration.views import generation_view
from nemorouter.service.auth import bearer
from nemorouter.service.keyformat import key_scope
from nemorouter.store.records import ApiKey
from nemorouter.web.state import services_of


async def _key(request: Request, scope: str = "inference") -> ApiKey:
    services = services_of(request)
    assert services.auth is not None
    return await services.auth.authenticate(bearer(request.headers.get("authorization")), scope)


async def _any_key(request: Request) -> ApiKey:
    secret = bearer(request.headers.get("authorization"))
    scope = (key_scope(secret) if secret else None) or "inference"
    return await _key(request, scope)


async def current_key(request: Request) -> Response:
    services = services_of(request)
    key = await _any_key(request)
    return json_response({"data": await services.admin.key_view(key)})


async def generation(request: Request) -> Response:
    services = services_of(request)
    key = await _any_key(request)
    gen_id = request.query_params.get("id")
    if not gen_id:
        raise InvalidRequest("query parameter `id` is required")
    gen = await services.store.get_generation(gen_id)
    visible = gen is not None and (
        gen.key_id == key.id if key.scope == "inference" else gen.account_id == key.account_id
    )
    if gen is None or not visible:
        raise NotFound(f"no generation {gen_id}")
    return json_response({"data": generation_view(gen)})


async def generations(request: Request) -> Response:
    """Recent requests: an inference key sees its own, a management key its whole account's."""
    services = services_of(request)
    key = await _any_key(request)
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise InvalidRequest("`limit` must be an integer from 1 to 500")
    key_id = key.id if key.scope == "inference" else None
    found = await services.store.list_generations(key.account_id, key_id, int(raw))
    return json_response({"data": [generation_view(g) for g in found]})


routes = [
    *models_api.routes,
    Route("/v1/key", current_key, methods=["GET"]),
    Route("/v1/generation", generation, methods=["GET"]),
    Route("/v1/generations", generations, methods=["GET"]),
]
