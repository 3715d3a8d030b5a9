"""The operator's pages: accounts and credit grants, providers and their vault keys (by
fingerprint, never the secret), models and prices, reconciliation, the ledger's verification.
Each change is the admin API's own service call."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from nemorouter.console import invites
from nemorouter.console.web import Ctx, page, redirect, render
from nemorouter.errors import InvalidRequest, NotFound
from nemorouter.service.accounting import reconcile
from nemorouter.service.administration.views import provider_view

_DONE = {
    "credited": "Credit granted.",
    "key-added": "Vault key added.",
    "key-rotated": "New vault key added; the old one is disabled.",
    "quarantine": "The vault key is quarantined: no request uses it until it is released.",
    "release": "The vault key is released from quarantine.",
    "disable": "The vault key is disabled.",
    "enable": "The vault key is enabled.",
}


async def _changed(ctx: Ctx) -> None:
    if ctx.services.routes is not None:
        await ctx.services.routes.refresh(force=True)


def _done(ctx: Ctx) -> str | None:
    return _DONE.get(ctx.request.query_params.get("done", ""))


async def _accounts_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    return render(
        ctx.request,
        "admin_accounts.html",
        status=status,
        session=ctx.session,
        accounts=await ctx.services.store.list_accounts(),
        done=_done(ctx),
        **extra,
    )


@page(operator=True)
async def accounts(ctx: Ctx) -> Response:
    return await _accounts_page(ctx)


@page(operator=True)
async def grant(ctx: Ctx) -> Response:
    account_id = ctx.request.path_params["account_id"]
    body = {
        "amount": ctx.form.get("amount", "").strip().removeprefix("$"),
        "reason": ctx.form.get("reason", ""),
    }
    if not body["reason"].strip():
        return await _accounts_page(ctx, status=400, error="A credit grant needs a reason.")
    try:
        await ctx.services.admin.add_credit(account_id, body)
    except InvalidRequest as exc:
        return await _accounts_page(ctx, status=400, error=exc.message)
    return redirect("/admin/accounts?done=credited")


@page(operator=True)
async def invite(ctx: Ctx) -> Response:
    account_id = ctx.request.path_params["account_id"]
    base = str(ctx.request.base_url)
    try:
        made = await invites.invite(ctx.services, account_id, {"email": ctx.form.get("email", "")}, base)
    except InvalidRequest as exc:
        return await _accounts_page(ctx, status=400, error=exc.message)
    return await _accounts_page(ctx, status=201, invite=made)


async def _providers_page(ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    store = ctx.services.store
    gateway = ctx.services.gateway
    health = gateway.health.describe if gateway is not None else None
    keys = await store.list_provider_keys()
    providers = [
        provider_view(p, [k for k in keys if k.provider_id == p.id], health)
        for p in await store.list_providers()
    ]
    return render(
        ctx.request,
        "admin_providers.html",
        status=status,
        session=ctx.session,
        providers=providers,
        done=_done(ctx),
        **extra,
    )


@page(operator=True)
async def providers(ctx: Ctx) -> Response:
    return await _providers_page(ctx)


@page(operator=True)
async def add_provider_key(ctx: Ctx) -> Response:
    name = ctx.request.path_params["name"]
    body = {"secret": ctx.form.get("secret", ""), "label": ctx.form.get("label", "").strip() or None}
    try:
        await ctx.services.admin.add_provider_key(name, body)
    except InvalidRequest as exc:
        return await _providers_page(ctx, status=400, error=exc.message)
    await _changed(ctx)
    return redirect("/admin/providers?done=key-added")


_KEY_ACTIONS: dict[str, dict[str, Any]] = {
    "quarantine": {"quarantined": True},
    "release": {"quarantined": False},
    "disable": {"disabled": True},
    "enable": {"disabled": False},
}


@page(operator=True)
async def provider_key_action(ctx: Ctx) -> Response:
    name, key_id = ctx.request.path_params["name"], ctx.request.path_params["key_id"]
    action = ctx.request.path_params["action"]
    admin = ctx.services.admin
    if action == "rotate":
        # A vault key is rotated as the operator would by hand: the new secret is added with the
        # old key's label and weight, then the old key is disabled (kept for the records).
        provider = await admin.provider(name)
        old = next(
            (k for k in await ctx.services.store.list_provider_keys(provider.id) if k.id == key_id), None
        )
        if old is None:
            raise NotFound(f"no key {key_id} for provider {name}")
        body = {"secret": ctx.form.get("secret", ""), "label": old.label, "weight": old.weight}
        try:
            await admin.add_provider_key(name, body)
        except InvalidRequest as exc:
            return await _providers_page(ctx, status=400, error=exc.message)
        await admin.update_provider_key(name, key_id, {"disabled": True})
        await _changed(ctx)
        return redirect("/admin/providers?done=key-rotated")
    if action not in _KEY_ACTIONS:
        raise NotFound(f"no action {action}")
    await admin.update_provider_key(name, key_id, _KEY_ACTIONS[action])
    await _changed(ctx)
    return redirect(f"/admin/providers?done={action}")


@page(operator=True)
async def models(ctx: Ctx) -> Response:
    names = {p.id: p.name for p in await ctx.services.store.list_providers()}
    return render(
        ctx.request,
        "admin_models.html",
        session=ctx.session,
        models=await ctx.services.store.list_models(),
        names=names,
    )


@page(operator=True)
async def reconciliation(ctx: Ctx) -> Response:
    services = ctx.services
    query = ctx.request.query_params
    today = services.clock().date()
    month = query.get("month") or f"{today.year:04d}-{today.month:02d}"
    provider_names = [p.name for p in await services.store.list_providers()]
    provider = query.get("provider") or (provider_names[0] if provider_names else "")
    lines: list[dict[str, Any]] = []
    error = None
    if provider:
        try:
            lines = reconcile.by_key_and_day(
                await reconcile.provider_month(services.store, provider, month, today)
            )
        except (InvalidRequest, NotFound) as exc:
            error = exc.message
    return render(
        ctx.request,
        "admin_reconciliation.html",
        status=400 if error else 200,
        session=ctx.session,
        providers=provider_names,
        provider=provider,
        month=month,
        lines=lines,
        total=sum(line["cost"].pico for line in lines),
        error=error,
    )


@page(operator=True)
async def ledger(ctx: Ctx) -> Response:
    report = await ctx.services.store.verify_ledger()
    holds = await ctx.services.store.open_holds()
    return render(ctx.request, "admin_ledger.html", session=ctx.session, report=report, holds=len(holds))
