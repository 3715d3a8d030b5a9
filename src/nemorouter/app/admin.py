"""The operator's admin API under /admin/v1 (operator token)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.app.http import json_response, read_json
from nemorouter.console.invites import invite as console_invite
from nemorouter.errors import AuthError, InvalidRequest, NotFound
from nemorouter.service import audit
from nemorouter.service.accounting import reconcile
from nemorouter.service.administration.views import (
    account_view,
    credit_view,
    model_admin_view,
    provider_key_view,
    provider_view,
)
from nemorouter.service.auth import bearer
from nemorouter.service.container import Services
from nemorouter.timeutil import iso, parse_iso
from nemorouter.web.state import services_of

Handler = Callable[[Request, Services, dict[str, Any]], Awaitable[Response]]


def operator(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Checks the operator token, then hands the handler the services and the JSON body."""

    async def endpoint(request: Request) -> Response:
        services = services_of(request)
        if not services.admin_token_ok(bearer(request.headers.get("authorization"))):
            raise AuthError("the admin API needs the operator token (NEMO_ADMIN_TOKEN)")
        audit.set_actor("admin")
        writes = request.method in ("POST", "PATCH", "PUT", "DELETE")
        body = await read_json(request, services.settings.max_body_bytes) if writes else {}
        response = await handler(request, services, body)
        if writes and services.routes is not None:
            await services.routes.refresh(force=True)  # this replica sees its own change at once
        return response

    return endpoint


async def _provider_names(services: Services) -> dict[str, str]:
    return {p.id: p.name for p in await services.store.list_providers()}


async def providers(request: Request, services: Services, body: dict[str, Any]) -> Response:
    if request.method == "POST":
        provider = await services.admin.create_provider(body)
        return json_response({"data": provider_view(provider, [])}, status=201)
    keys = await services.store.list_provider_keys()
    return json_response(
        {
            "data": [
                provider_view(p, [k for k in keys if k.provider_id == p.id], _health(services))
                for p in await services.store.list_providers()
            ]
        }
    )


async def one_provider(request: Request, services: Services, body: dict[str, Any]) -> Response:
    provider = await services.admin.provider(request.path_params["name"])
    keys = await services.store.list_provider_keys(provider.id)
    return json_response({"data": provider_view(provider, keys, _health(services))})


def _health(services: Services) -> Callable[[str], dict[str, object]] | None:
    return services.gateway.health.describe if services.gateway is not None else None


async def provider_keys(request: Request, services: Services, body: dict[str, Any]) -> Response:
    key = await services.admin.add_provider_key(request.path_params["name"], body)
    return json_response(provider_key_view(key) | {"data": provider_key_view(key)}, status=201)


async def provider_key(request: Request, services: Services, body: dict[str, Any]) -> Response:
    name, key_id = request.path_params["name"], request.path_params["key_id"]
    if request.method == "DELETE":
        await services.admin.delete_provider_key(name, key_id)
        return json_response({"data": {"id": key_id, "deleted": True}})
    key = await services.admin.update_provider_key(name, key_id, body)
    return json_response({"data": provider_key_view(key)})


async def models(request: Request, services: Services, body: dict[str, Any]) -> Response:
    names = await _provider_names(services)
    if request.method == "POST":
        model = await services.admin.upsert_model(body)
        return json_response({"data": model_admin_view(model, names)}, status=201)
    return json_response({"data": [model_admin_view(m, names) for m in await services.store.list_models()]})


async def import_models(request: Request, services: Services, body: dict[str, Any]) -> Response:
    names = await _provider_names(services)
    vendor, provider = body.get("vendor"), body.get("provider")
    if not isinstance(vendor, str) or not isinstance(provider, str):
        from nemorouter.errors import InvalidRequest

        raise InvalidRequest("`vendor` and `provider` are required strings")
    found = await services.admin.import_models(vendor, provider)
    return json_response({"data": [model_admin_view(m, names) for m in found]}, status=201)


async def one_model(request: Request, services: Services, body: dict[str, Any]) -> Response:
    model_id = request.path_params["model_id"]
    if request.method == "DELETE":
        await services.admin.delete_model(model_id)
        return json_response({"data": {"id": model_id, "deleted": True}})
    if request.method == "PATCH":
        model = await services.admin.upsert_model(body, model_id=model_id)
    else:
        found = await services.store.get_model(model_id)
        if found is None:
            raise NotFound(f"model {model_id} does not exist")
        model = found
    return json_response({"data": model_admin_view(model, await _provider_names(services))})


async def accounts(request: Request, services: Services, body: dict[str, Any]) -> Response:
    if request.method == "POST":
        account = await services.admin.create_account(body)
        return json_response({"data": account_view(account)}, status=201)
    return json_response({"data": [account_view(a) for a in await services.store.list_accounts()]})


async def one_account(request: Request, services: Services, body: dict[str, Any]) -> Response:
    account_id = request.path_params["account_id"]
    if request.method == "PATCH":
        return json_response({"data": account_view(await services.admin.update_account(account_id, body))})
    return json_response({"data": account_view(await services.admin.account(account_id))})


async def credits(request: Request, services: Services, body: dict[str, Any]) -> Response:
    credit, created = await services.admin.add_credit(request.path_params["account_id"], body)
    return json_response({"data": credit_view(credit)}, status=201 if created else 200)


async def account_keys(request: Request, services: Services, body: dict[str, Any]) -> Response:
    account_id = request.path_params["account_id"]
    if request.method == "POST":
        secret, key = await services.admin.create_key(account_id, body)
        return json_response({"key": secret, "data": await services.admin.key_view(key)}, status=201)
    await services.admin.account(account_id)
    return json_response(
        {"data": [await services.admin.key_view(k) for k in await services.store.list_keys(account_id)]}
    )


async def management_keys(request: Request, services: Services, body: dict[str, Any]) -> Response:
    secret, key = await services.admin.create_key(request.path_params["account_id"], body, scope="management")
    return json_response({"key": secret, "data": await services.admin.key_view(key)}, status=201)


async def one_key(request: Request, services: Services, body: dict[str, Any]) -> Response:
    key_id = request.path_params["key_id"]
    if request.method == "PATCH":
        key = await services.admin.update_key(key_id, body)
    elif request.method == "DELETE":
        key = await services.admin.revoke_key(key_id)
    else:
        key = await services.admin.key(key_id)
    return json_response({"data": await services.admin.key_view(key)})


async def rotate_key(request: Request, services: Services, body: dict[str, Any]) -> Response:
    secret, key = await services.admin.rotate_key(request.path_params["key_id"], body)
    return json_response({"key": secret, "data": await services.admin.key_view(key)}, status=201)


async def invites(request: Request, services: Services, body: dict[str, Any]) -> Response:
    """A console user for the account and a one-time set-password link (shown only here)."""
    made = await console_invite(services, request.path_params["account_id"], body, str(request.base_url))
    return json_response({"data": made}, status=201)


async def reconciliation(request: Request, services: Services, body: dict[str, Any]) -> Response:
    provider = request.query_params.get("provider")
    month = request.query_params.get("month")
    if not provider or not month:
        raise InvalidRequest("`provider` and `month` (YYYY-MM) are required")
    today = services.clock().date()
    rows = await reconcile.provider_month(services.store, provider, month, today)
    overruns = await reconcile.provider_overruns(services.store, provider, month, today)
    return json_response(
        {"data": reconcile.by_key_and_day(rows), "overruns": overruns, "provider": provider, "month": month}
    )


async def audit_log(request: Request, services: Services, body: dict[str, Any]) -> Response:
    """The audit log, newest first: `?actor=&action=&account_id=&target=&from=&to=&limit=`."""
    query = request.query_params
    raw = query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("`limit` must be an integer from 1 to 1000")
    since, until = (_audit_time(query.get(name), name) for name in ("from", "to"))
    found = await services.store.list_audit(
        actor=query.get("actor"),
        action=query.get("action"),
        account_id=query.get("account_id"),
        target=query.get("target"),
        since=since,
        until=until,
        limit=int(raw),
    )
    return json_response({"data": [audit.view(r) for r in found]})


def _audit_time(value: str | None, name: str) -> str | None:
    """A bound as stored (`from`, `to`: a date or an ISO 8601 time, UTC)."""
    if value is None:
        return None
    try:
        return iso(parse_iso(value if "T" in value else f"{value}T00:00:00Z"))
    except ValueError:
        raise InvalidRequest(f"`{name}` must be a date (YYYY-MM-DD) or an ISO 8601 time") from None


async def audit_verify(request: Request, services: Services, body: dict[str, Any]) -> Response:
    problems, count = await services.store.verify_audit()
    return json_response({"ok": not problems, "problems": problems, "entries": count})


async def verify(request: Request, services: Services, body: dict[str, Any]) -> Response:
    report = await services.store.verify_ledger()
    return json_response(report.as_json())


P = "/admin/v1"
routes = [
    Route(f"{P}/providers", operator(providers), methods=["GET", "POST"]),
    Route(f"{P}/providers/{{name}}", operator(one_provider), methods=["GET"]),
    Route(f"{P}/providers/{{name}}/keys", operator(provider_keys), methods=["POST"]),
    Route(f"{P}/providers/{{name}}/keys/{{key_id}}", operator(provider_key), methods=["PATCH", "DELETE"]),
    Route(f"{P}/models", operator(models), methods=["GET", "POST"]),
    Route(f"{P}/models/import", operator(import_models), methods=["POST"]),
    Route(f"{P}/models/{{model_id:path}}", operator(one_model), methods=["GET", "PATCH", "DELETE"]),
    Route(f"{P}/accounts", operator(accounts), methods=["GET", "POST"]),
    Route(f"{P}/accounts/{{account_id}}", operator(one_account), methods=["GET", "PATCH"]),
    Route(f"{P}/accounts/{{account_id}}/credits", operator(credits), methods=["POST"]),
    Route(f"{P}/accounts/{{account_id}}/keys", operator(account_keys), methods=["GET", "POST"]),
    Route(f"{P}/accounts/{{account_id}}/invites", operator(invites), methods=["POST"]),
    Route(f"{P}/accounts/{{account_id}}/management-keys", operator(management_keys), methods=["POST"]),
    Route(f"{P}/keys/{{key_id}}", operator(one_key), methods=["GET", "PATCH", "DELETE"]),
    Route(f"{P}/keys/{{key_id}}/rotate", operator(rotate_key), methods=["POST"]),
    Route(f"{P}/ledger/verify", operator(verify), methods=["GET"]),
    Route(f"{P}/audit", operator(audit_log), methods=["GET"]),
    Route(f"{P}/audit/verify", operator(audit_verify), methods=["GET"]),
    Route(f"{P}/reconciliation", operator(reconciliation), methods=["GET"]),
]
