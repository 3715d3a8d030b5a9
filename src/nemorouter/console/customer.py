"""A customer's pages: overview, keys, activity, billing, settings.

Every lookup is scoped to the signed-in user's account (`ctx.account_id`); an id of another
account is a 404 page. Changes go through the same service calls as the management API, so
limits, audits and money rules live in one place.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from nemorouter.console.charts import daily_by_model
from nemorouter.console.web import Ctx, page, redirect, render
from nemorouter.errors import InvalidRequest, NotFound
from nemorouter.service.accounting.reports import (
    Reports,
    bound,
    month_start,
    next_month,
    parse_format,
    parse_month,
)
from nemorouter.service.accounting.statement_render import MEDIA_TYPES, render_statement, statement_filename
from nemorouter.service.administration.views import generation_view
from nemorouter.service.alerting import alerts
from nemorouter.store.records import ApiKey

ACTIVITY_ROWS = 200
_DONE = {
    "disabled": "The key is disabled.",
    "enabled": "The key is enabled again.",
    "revoked": "The key is revoked: requests with it are refused from now on.",
    "alerts": "Alert settings saved.",
}


async def _changed(ctx: Ctx) -> None:
    if ctx.services.routes is not None:
        await ctx.services.routes.refresh(force=True)  # this replica sees its own change at once


def _done(request: Request) -> str | None:
    return _DONE.get(request.query_params.get("done", ""))


@page()
async def overview(ctx: Ctx) -> Response:
    services = ctx.services
    account = await services.admin.account(ctx.account_id)
    today = services.clock().date()
    start, end = month_start(today), next_month(today)
    rows = await services.store.usage_rows(ctx.account_id, bound(start), bound(end))
    by_key = await Reports(services.store).usage(ctx.account_id, start, end, "key")
    top = sorted(by_key, key=lambda g: -g.tally.cost)[:5]
    return render(
        ctx.request,
        "overview.html",
        session=ctx.session,
        account=account,
        month=start.strftime("%B %Y"),
        spend=sum(r.cost for r in rows),
        requests=sum(r.requests for r in rows),
        chart=daily_by_model(rows, start, end),
        top=top,
    )


async def _key_views(ctx: Ctx, scope: str) -> list[dict[str, Any]]:
    found = await ctx.services.store.list_keys(ctx.account_id, scope=scope)
    return [await ctx.services.admin.key_view(k) for k in found]


async def _keys_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    models = [m.id for m in await ctx.services.store.list_models()]
    return render(
        ctx.request,
        "keys.html",
        status=status,
        session=ctx.session,
        keys=await _key_views(ctx, "inference"),
        models=models,
        done=_done(ctx.request),
        **extra,
    )


def _int_field(form: dict[str, str], name: str) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidRequest(f"`{name}` must be a positive whole number")
    return int(text)


def key_body(form: dict[str, str]) -> dict[str, Any]:
    """The management API's key body, from the create form (empty fields are left out)."""
    body: dict[str, Any] = {"name": form.get("name", "")}
    if form.get("limit", "").strip():
        body["limit"] = form["limit"].strip().removeprefix("$")
    if form.get("limit_reset", "").strip():
        body["limit_reset"] = form["limit_reset"].strip()
    rpm = _int_field(form, "rpm")
    if rpm is not None:
        body["rpm"] = rpm
    models = [m.strip() for m in form.get("allowed_models", "").replace("\n", ",").split(",") if m.strip()]
    if models:
        body["allowed_models"] = models
    return body


@page()
async def keys(ctx: Ctx) -> Response:
    if ctx.request.method == "GET":
        return await _keys_page(ctx)
    try:
        secret, key = await ctx.services.admin.create_key(ctx.account_id, key_body(ctx.form))
    except InvalidRequest as exc:
        return await _keys_page(ctx, status=400, error=exc.message, form=ctx.form)
    await _changed(ctx)
    return await _keys_page(ctx, status=201, secret=secret, secret_for=key.name)


async def _own_key(ctx: Ctx, scope: str) -> ApiKey:
    key = await ctx.services.admin.key(ctx.request.path_params["key_id"], account_id=ctx.account_id)
    if key.scope != scope:
        raise NotFound(f"no key {key.id}")
    return key


@page()
async def key_action(ctx: Ctx) -> Response:
    """disable, enable, revoke or rotate one of the account's inference keys."""
    action = ctx.request.path_params["action"]
    key = await _own_key(ctx, "inference")
    admin = ctx.services.admin
    if action == "rotate":
        secret, key = await admin.rotate_key(key.id, {"grace_seconds": 0}, account_id=ctx.account_id)
        await _changed(ctx)
        return await _keys_page(ctx, status=201, secret=secret, secret_for=key.name)
    if action == "revoke":
        await admin.revoke_key(key.id, account_id=ctx.account_id)
        done = "revoked"
    elif action in ("disable", "enable"):
        await admin.update_key(key.id, {"disabled": action == "disable"}, account_id=ctx.account_id)
        done = action + "d"
    else:
        raise NotFound(f"no action {action}")
    await _changed(ctx)
    return redirect(f"/keys?done={done}")


@page()
async def activity(ctx: Ctx) -> Response:
    query = ctx.request.query_params
    key_id = query.get("key") or None
    model = query.get("model") or None
    status = query.get("status") or None
    store = ctx.services.store
    found = await store.list_generations(ctx.account_id, key_id, 1000)
    models = sorted({g.model for g in found})
    shown = [
        g for g in found if (model is None or g.model == model) and (status is None or g.status == status)
    ]
    names = {k.id: k.name for k in await store.list_keys(ctx.account_id)}
    return render(
        ctx.request,
        "activity.html",
        session=ctx.session,
        generations=shown[:ACTIVITY_ROWS],
        more=len(shown) > ACTIVITY_ROWS,
        names=names,
        models=models,
        filters={"key": key_id or "", "model": model or "", "status": status or ""},
    )


@page()
async def generation(ctx: Ctx) -> Response:
    gen = await ctx.services.store.get_generation(ctx.request.path_params["generation_id"])
    if gen is None or gen.account_id != ctx.account_id:
        raise NotFound("no such request in this account")
    key = await ctx.services.store.get_key(gen.key_id)
    return render(
        ctx.request,
        "generation.html",
        session=ctx.session,
        gen=gen,
        view=generation_view(gen),
        key_name=key.name if key is not None else gen.key_id,
    )


def _months(created_at: str, today: date) -> list[str]:
    """Every month from the account's first to the current one, newest first."""
    first = date(int(created_at[:4]), int(created_at[5:7]), 1)
    out: list[str] = []
    at = month_start(today)
    while at >= first and len(out) < 36:
        out.append(f"{at.year:04d}-{at.month:02d}")
        at = date(at.year - 1, 12, 1) if at.month == 1 else date(at.year, at.month - 1, 1)
    return out


@page()
async def billing(ctx: Ctx) -> Response:
    services = ctx.services
    account = await services.admin.account(ctx.account_id)
    credits = sorted(
        await services.store.list_credits(ctx.account_id), key=lambda c: c.created_at, reverse=True
    )
    settings = services.settings
    topup = settings.stripe_topup_url
    top_up = topup.replace("{account_id}", account.id) if topup and settings.stripe_webhook_secret else None
    return render(
        ctx.request,
        "billing.html",
        session=ctx.session,
        account=account,
        credits=credits,
        months=_months(account.created_at, services.clock().date()),
        top_up=top_up,
    )


@page()
async def statement(ctx: Ctx) -> Response:
    """This month's (or an earlier month's) statement as PDF, CSV or HTML: the management API's."""
    services = ctx.services
    now = services.clock()
    start, end = parse_month(ctx.request.path_params["month"], now.date())
    fmt = parse_format(ctx.request.path_params["fmt"], ("csv", "pdf", "html"))
    account = await services.admin.account(ctx.account_id)
    found = await Reports(services.store).statement(account, start, end, now)
    body = await asyncio.to_thread(render_statement, found, fmt)
    disposition = "inline" if fmt == "html" else "attachment"
    headers = {"content-disposition": f'{disposition}; filename="{statement_filename(found, fmt)}"'}
    response = Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
    for name, value in (("x-content-type-options", "nosniff"), ("cache-control", "no-store")):
        response.headers[name] = value
    if fmt == "html":  # the statement page styles itself inline and runs no script
        response.headers["content-security-policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
        )
    return response


async def _settings_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    store = ctx.services.store
    found = await store.get_alert_settings(ctx.account_id)
    return render(
        ctx.request,
        "settings.html",
        status=status,
        session=ctx.session,
        alert=alerts.settings_view(found) if found else None,
        recent=[alerts.delivery_view(r) for r in await store.list_alerts(ctx.account_id, 10)],
        management=await _key_views(ctx, "management"),
        done=_done(ctx.request),
        **extra,
    )


@page()
async def settings(ctx: Ctx) -> Response:
    if ctx.request.method == "GET":
        return await _settings_page(ctx)
    form = ctx.form
    body: dict[str, Any] = {"url": form.get("url", "").strip()}
    threshold = form.get("low_balance_threshold", "").strip().removeprefix("$")
    body["low_balance_threshold"] = threshold or None
    try:
        services = ctx.services
        _, secret = await alerts.configure(
            services.store,
            services.vault,
            ctx.account_id,
            body,
            services.clock(),
            allow_private=services.settings.webhooks_allow_private,
        )
    except InvalidRequest as exc:
        return await _settings_page(ctx, status=400, error=exc.message)
    if secret is None:
        return redirect("/settings?done=alerts")
    return await _settings_page(ctx, secret=secret, secret_for="alert signing secret")


@page()
async def management_keys(ctx: Ctx) -> Response:
    try:
        secret, key = await ctx.services.admin.create_key(
            ctx.account_id, {"name": ctx.form.get("name", "")}, scope="management"
        )
    except InvalidRequest as exc:
        return await _settings_page(ctx, status=400, error=exc.message)
    await _changed(ctx)
    return await _settings_page(ctx, status=201, secret=secret, secret_for=key.name)


@page()
async def revoke_management_key(ctx: Ctx) -> Response:
    key = await _own_key(ctx, "management")
    await ctx.services.admin.revoke_key(key.id, account_id=ctx.account_id)
    await _changed(ctx)
    return redirect("/settings?done=revoked")
