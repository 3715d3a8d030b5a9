"""`GET /v1/models` and `GET /v1/models/{id}` in the shape each SDK types: OpenAI's (with
OpenRouter's extra fields) by default, Anthropic's when the request carries `anthropic-version`
(the anthropic SDK always sends it), with that API's `limit`/`after_id`/`before_id` paging."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.app.http import json_response
from nemorouter.errors import InvalidRequest, NotFound
from nemorouter.service.administration.views import anthropic_model_view, public_model_view
from nemorouter.store.records import Model
from nemorouter.web.state import services_of

_DEFAULT_PAGE = 20  # Anthropic's own default and bound
_MAX_PAGE = 1000


async def _servable(request: Request) -> list[Model]:
    services = services_of(request)
    assert services.routes is not None
    await services.routes.refresh()
    return services.routes.servable_models()


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


def anthropic_page(models: list[Model], query: dict[str, str]) -> dict[str, Any]:
    """One page of Anthropic's list: `after_id` pages forward, `before_id` backward (ids of this
    list, in its order: by id); an unknown cursor id is a 400, as a client's mistake."""
    raw = query.get("limit", str(_DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_PAGE:
        raise InvalidRequest(f"`limit` must be an integer from 1 to {_MAX_PAGE}")
    limit = int(raw)
    ids = [m.id for m in models]
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequest("give `after_id` or `before_id`, not both")
    for cursor in (after, before):
        if cursor is not None and cursor not in ids:
            raise InvalidRequest(f"no model {cursor} to page from")
    if before is not None:
        end = ids.index(before)
        start = max(0, end - limit)
        page, has_more = models[start:end], start > 0
    else:
        start = ids.index(after) + 1 if after is not None else 0
        page, has_more = models[start : start + limit], start + limit < len(models)
    return {
        "data": [anthropic_model_view(m) for m in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


async def models(request: Request) -> Response:
    found = await _servable(request)
    if _anthropic(request):
        return json_response(anthropic_page(found, dict(request.query_params)))
    return json_response({"object": "list", "data": [public_model_view(m) for m in found]})


async def model(request: Request) -> Response:
    wanted = request.path_params["model_id"]
    services = services_of(request)
    assert services.routes is not None
    await services.routes.refresh()
    route = services.routes.route(wanted)
    if route is None or not route.deployments:
        raise NotFound(f"model {wanted} does not exist", type="model_not_found")
    view = anthropic_model_view if _anthropic(request) else public_model_view
    return json_response(view(route.model))


routes = [
    Route("/v1/models", models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", model, methods=["GET"]),
]
