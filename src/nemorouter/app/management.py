"""The account management API (management key): credits, the account's keys, usage and statements."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.app.headers import CSP
from nemorouter.app.http import json_response, read_json
from nemorouter.errors import NotFound
from nemorouter.service import audit
from nemorouter.service.accounting.reports import (
    STATEMENT_FORMATS,
    Reports,
    parse_format,
    parse_group_by,
    parse_month,
    usage_json,
    usage_range,
)
from nemorouter.service.accounting.statement_render import (
    MEDIA_TYPES,
    STYLE_HASH,
    render_statement,
    statement_filename,
    usage_csv,
)
from nemorouter.service.administration.views import credits_view
from nemorouter.service.alerting import alerts
from nemorouter.service.auth import bearer
from nemorouter.service.container import Services
from nemorouter.store.records import ApiKey
from nemorouter.timeutil import to_api
from nemorouter.web.state import services_of


async def _mgmt(request: Request) -> tuple[Services, ApiKey]:
    services = services_of(request)
    assert services.auth is not None
    key = await services.auth.authenticate(bearer(request.headers.get("authorization")), "management")
    audit.set_actor(f"management_key:{key.id}")  # what this request changes is recorded as by this key
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


async def usage(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    query = request.query_params
    start, end = usage_range(query.get("from"), query.get("to"), services.clock().date())
    group_by = parse_group_by(query.get("group_by"))
    fmt = parse_format(query.get("format"), ("json", "csv"))
    groups = await Reports(services.store).usage(mgmt.account_id, start, end, group_by)
    if fmt == "csv":
        name = f"nemorouter-usage-{mgmt.account_id}-{start}-{end}-{group_by}.csv"
        disposition = {"content-disposition": f'attachment; filename="{name}"'}
        return Response(usage_csv(groups, group_by), media_type=MEDIA_TYPES["csv"], headers=disposition)
    return json_response(usage_json(groups, group_by, start, end))


async def statement(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    now = services.clock()
    start, end = parse_month(request.path_params["month"], now.date())
    fmt = parse_format(request.query_params.get("format"), STATEMENT_FORMATS)
    account = await services.admin.account(mgmt.account_id)
    found = await Reports(services.store).statement(account, start, end, now)
    # Rendering is pure CPU (a PDF of a long month takes a while): keep it off the event loop.
    body = await asyncio.to_thread(render_statement, found, fmt)
    headers = {}
    if fmt != "json":
        disposition = "attachment" if fmt in ("csv", "pdf") else "inline"
        headers["content-disposition"] = f'{disposition}; filename="{statement_filename(found, fmt)}"'
    if fmt == "html":
        headers["content-security-policy"] = f"{CSP}; style-src {STYLE_HASH}"
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)


# -- alerts out ("One bill" 4): the account's webhook ------------------------------------


async def alert_settings(request: Request) -> Response:
    services, mgmt = await _mgmt(request)
    if request.method == "PUT":
        body = await read_json(request, services.settings.max_body_bytes)
        found, secret = await alerts.configure(
            services.store,
            services.vault,
            mgmt.account_id,
            body,
            services.clock(),
            allow_private=services.settings.webhooks_allow_private,
        )
        return json_response(alerts.put_answer(found, secret))
    settings = await services.store.get_alert_settings(mgmt.account_id)
    if settings is None:
        raise NotFound("this account has no alerts set: PUT /v1/alerts {url, low_balance_threshold}")
    recent = [alerts.delivery_view(r) for r in await services.store.list_alerts(mgmt.account_id, 20)]
    return json_response({"data": {**alerts.settings_view(settings), "recent": recent}})


routes = [
    Route("/v1/credits", credits, methods=["GET"]),
    Route("/v1/keys", keys, methods=["GET", "POST"]),
    Route("/v1/keys/{key_id}", one_key, methods=["GET", "PATCH", "DELETE"]),
    Route("/v1/keys/{key_id}/rotate", rotate, methods=["POST"]),
    Route("/v1/leaks", leaks, methods=["GET"]),
    Route("/v1/usage", usage, methods=["GET"]),
    Route("/v1/statements/{month}", statement, methods=["GET"]),
    Route("/v1/alerts", alert_settings, methods=["GET", "PUT"]),
]
