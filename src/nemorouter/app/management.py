"""The account management API (management key): credits and the account's keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.app.http import json_response, read_json
from nemorouter.app.state import services_of
from nemorouter.service.auth import bearer
from nemorouter.service.container import Services
from nemorouter.service.views import credits_view
from nemorouter.store.records import ApiKey
from nemorouter.timeutil import to_api


async def _mgmt(request: Request) -> tuple[Services, ApiKey]:
    services = services_of(request)
    assert services.auth is not None
    key = await services.auth.authenticate(bearer(request.headers.get("authorization")), "management")
    return services, key


async def _changed(services: Services) -> None:
    if services.routes is not None:
        await services.routes.refresh(force=True)  # this replica sees its own change at once


async def credits(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    account = await services.admin.account(mgmt.account_id)
    return json_response({"data": credits_view(account)})


async def keys(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    if request.method == "POST":
        body = await read_json(request, services.settings.max_body_bytes)
        secret, key = await services.admin.create_key(mgmt.account_id, body)
        await _changed(services)
        return json_response({"key": secret, "data": await services.admin.key_view(key)}, status=201)
    found = await services.store.list_keys(mgmt.account_id, scope="inference")
    return json_response({"data": [await services.admin.key_view(k) for k in found]})


async def one_key(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    key_id = request.path_params["key_id"]
    if request.method == "PATCH":
        body = await read_json(request, services.settings.max_body_bytes)
        key = await services.admin.update_key(key_id, body, account_id=mgmt.account_id)
    elif request.method == "DELETE":
        key = await services.admin.revoke_key(key_id, account_id=mgmt.account_id)
    else:
        key = await services.admin.key(key_id, account_id=mgmt.account_id)
    if request.method != "GET":
        await _changed(services)
    return json_response({"data": await services.admin.key_view(key)})


async def rotate(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    body = await read_json(request, services.settings.max_body_bytes)
    secret, key = await services.admin.rotate_key(
        request.path_params["key_id"], body, account_id=mgmt.account_id
    )
    await _changed(services)
    return json_response({"key": secret, "data": await services.admin.key_view(key)}, status=201)


async def leaks(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    events = await services.store.list_leak_events(mgmt.account_id)
    return json_response({"data": [{**e, "reported_at": to_api(e["reported_at"])} for e in events]})


routes = [
    Route("/v1/credits", credits, methods=["GET"]),
    Route("/v1/keys", keys, methods=["GET", "POST"]),
    Route("/v1/keys/{key_id}", one_key, methods=["GET", "PATCH", "DELETE"]),
    Route("/v1/keys/{key_id}/rotate", rotate, methods=["POST"]),
    Route("/v1/leaks", leaks, methods=["GET"]),
]
