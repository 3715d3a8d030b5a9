"""Admin commands: the admin API's operations, straight on the store. Output is JSON."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from nemorouter.cli.common import emit, fail, run
from nemorouter.service.administration.views import (
    account_view,
    credit_view,
    model_admin_view,
    provider_key_view,
    provider_view,
)
from nemorouter.service.container import Services

providers = typer.Typer(help="Providers and their vault keys.", no_args_is_help=True)
models = typer.Typer(help="Public models and their deployments.", no_args_is_help=True)
accounts = typer.Typer(help="Customer accounts.", no_args_is_help=True)
credits = typer.Typer(help="Prepaid credits.", no_args_is_help=True)
keys = typer.Typer(help="Inference keys.", no_args_is_help=True)
management_keys = typer.Typer(help="Management keys of an account.", no_args_is_help=True)
ledger = typer.Typer(help="The ledger.", no_args_is_help=True)


async def _names(services: Services) -> dict[str, str]:
    return {p.id: p.name for p in await services.store.list_providers()}


@providers.command("add")
def providers_add(
    name: str,
    kind: str = typer.Option(
        ..., help="openai | openai-compatible | anthropic | gemini | azure-openai | bedrock | vertex"
    ),
    base_url: str | None = typer.Option(
        None, help="as in the provider's official SDK (default: the vendor's)"
    ),
    vendor: str | None = typer.Option(
        None, help="openai-compatible vendor row: mistral, deepseek, groq, xai, ..."
    ),
    api_version: str | None = typer.Option(None, help="azure-openai only: the api-version to pin"),
    responses_api: bool | None = typer.Option(
        None,
        "--responses-api/--no-responses-api",
        help="openai kinds: send Responses clients' requests to its /responses (default: the vendor row's)",
    ),
    project: str | None = typer.Option(None, help="vertex only: the GCP project id"),
    region: str | None = typer.Option(
        None,
        help="bedrock and vertex (required): the AWS region (us-east-1, ...) or the Vertex AI location "
        "(us-central1, global, ...)",
    ),
) -> None:
    body: dict[str, Any] = {"name": name, "kind": kind, "base_url": base_url, "vendor": vendor}
    config: dict[str, Any] = {}
    if api_version is not None:
        config["api_version"] = api_version
    if responses_api is not None:
        config["responses_api"] = responses_api
    for setting, value in (("project", project), ("region", region)):
        if value is not None:
            config[setting] = value
    if config:
        body["config"] = config

    async def act(s: Services) -> None:
        emit({"data": provider_view(await s.admin.create_provider(body), [])})

    run(act)


@providers.command("list")
def providers_list() -> None:
    async def act(s: Services) -> None:
        keys_ = await s.store.list_provider_keys()
        emit(
            {
                "data": [
                    provider_view(p, [k for k in keys_ if k.provider_id == p.id])
                    for p in await s.store.list_providers()
                ]
            }
        )

    run(act)


@providers.command("add-key")
def providers_add_key(
    name: str,
    label: str = typer.Option("default"),
    weight: int = typer.Option(1),
    secret_env: str | None = typer.Option(None, help="read the secret from this environment variable"),
    secret_file: Path | None = typer.Option(
        None, help="read the secret from this file (e.g. a vertex service account's JSON key file)"
    ),
) -> None:
    """Add a provider secret to the vault; the secret is read from stdin (or --secret-env,
    --secret-file), never argv. From stdin, a vertex provider takes the whole service-account
    JSON (all of a piped stdin); other kinds take its first line."""
    if secret_file is not None:
        try:
            text = secret_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read --secret-file: {exc.strerror if isinstance(exc, OSError) else 'not text'}")
    elif secret_env:
        text = os.environ.get(secret_env, "")
    else:  # a person at a terminal pastes one line; a pipe may carry a whole JSON file
        text = sys.stdin.readline() if sys.stdin.isatty() else sys.stdin.read()
    if not text.strip():
        fail("no secret given: pipe it on stdin, or use --secret-env or --secret-file")

    async def act(s: Services) -> None:
        provider = await s.admin.provider(name)
        first_line = secret_file is None and not secret_env and provider.kind != "vertex"
        secret = (text.split("\n", 1)[0] if first_line else text).strip()
        key = await s.admin.add_provider_key(name, {"secret": secret, "label": label, "weight": weight})
        emit({"data": provider_key_view(key)})

    run(act)


@providers.command("update-key")
def providers_update_key(
    name: str,
    key_id: str,
    disabled: bool | None = typer.Option(None),
    weight: int | None = typer.Option(None),
) -> None:
    body: dict[str, Any] = {k: v for k, v in (("disabled", disabled), ("weight", weight)) if v is not None}

    async def act(s: Services) -> None:
        emit({"data": provider_key_view(await s.admin.update_provider_key(name, key_id, body))})

    run(act)


@providers.command("delete-key")
def providers_delete_key(name: str, key_id: str) -> None:
    async def act(s: Services) -> None:
        await s.admin.delete_provider_key(name, key_id)
        emit({"data": {"id": key_id, "deleted": True}})

    run(act)


@models.command("add")
def models_add(
    model_id: str,
    input: str = typer.Option(..., help="USD per 1M input tokens"),
    output: str = typer.Option("0", help="USD per 1M output tokens"),
    cache_read: str | None = typer.Option(None),
    cache_write: str | None = typer.Option(None),
    cache_write_1h: str | None = typer.Option(None),
    request: str | None = typer.Option(None, help="USD per request"),
    unit: list[str] = typer.Option(
        [], help="NAME=USD: USD per one unit (image/1024x1024/hd=0.08, character=0.000015), repeatable"
    ),
    context: int = typer.Option(128000),
    max_output: int = typer.Option(16384),
    mode: str = typer.Option("chat"),
    name: str | None = typer.Option(None),
    deploy: list[str] = typer.Option([], help="PROVIDER:UPSTREAM_MODEL[:PRIORITY[:WEIGHT]], repeatable"),
    alias: list[str] = typer.Option([], help="another name the model answers to, repeatable"),
) -> None:
    pricing = {
        "input": input,
        "output": output,
        "cache_read": cache_read,
        "cache_write": cache_write,
        "cache_write_1h": cache_write_1h,
        "request": request,
    }
    units = {}
    for spec in unit:
        name, sep, price = spec.partition("=")
        if not sep or not name or not price:
            fail(f"--unit {spec!r}: expected NAME=USD (USD per one unit)")
        units[name] = price
    deployments = []
    for spec in deploy:
        parts = spec.split(":")
        if len(parts) < 2:
            fail(f"--deploy {spec!r}: expected PROVIDER:UPSTREAM_MODEL")
        if not all(p.isdigit() for p in parts[2:4]) or len(parts) > 4:
            fail(
                f"--deploy {spec!r}: expected PROVIDER:UPSTREAM_MODEL[:PRIORITY[:WEIGHT]] with integer numbers"
            )
        dep: dict[str, Any] = {"provider": parts[0], "upstream_model": parts[1]}
        if len(parts) > 2:
            dep["priority"] = int(parts[2])
        if len(parts) > 3:
            dep["weight"] = int(parts[3])
        deployments.append(dep)
    body = {
        "id": model_id,
        "name": name or model_id,
        "mode": mode,
        "context_length": context,
        "max_output": max_output,
        "pricing": {k: v for k, v in pricing.items() if v is not None} | ({"units": units} if units else {}),
        "deployments": deployments,
        **({"aliases": alias} if alias else {}),
    }

    async def act(s: Services) -> None:
        emit({"data": model_admin_view(await s.admin.upsert_model(body), await _names(s))})

    run(act)


@models.command("aliases")
def models_aliases(model_id: str, aliases: list[str] = typer.Argument(None)) -> None:
    """Set the other names a model answers to (none given: it keeps only its id)."""

    async def act(s: Services) -> None:
        changed = await s.admin.upsert_model({"aliases": aliases or []}, model_id=model_id)
        emit({"data": model_admin_view(changed, await _names(s))})

    run(act)


@models.command("import")
def models_import(vendor: str = typer.Option(...), provider: str = typer.Option(...)) -> None:
    """Deploy every bundled catalog model of a vendor on a provider, at list price."""

    async def act(s: Services) -> None:
        found = await s.admin.import_models(vendor, provider)
        names = await _names(s)
        emit({"data": [model_admin_view(m, names) for m in found]})

    run(act)


@models.command("list")
def models_list() -> None:
    async def act(s: Services) -> None:
        names = await _names(s)
        emit({"data": [model_admin_view(m, names) for m in await s.store.list_models()]})

    run(act)


@models.command("delete")
def models_delete(model_id: str) -> None:
    async def act(s: Services) -> None:
        await s.admin.delete_model(model_id)
        emit({"data": {"id": model_id, "deleted": True}})

    run(act)


@accounts.command("create")
def accounts_create(name: str, email: str | None = typer.Option(None)) -> None:
    async def act(s: Services) -> None:
        emit({"data": account_view(await s.admin.create_account({"name": name, "email": email}))})

    run(act)


@accounts.command("get")
def accounts_get(account_id: str) -> None:
    async def act(s: Services) -> None:
        emit({"data": account_view(await s.admin.account(account_id))})

    run(act)


@accounts.command("list")
def accounts_list() -> None:
    async def act(s: Services) -> None:
        emit({"data": [account_view(a) for a in await s.store.list_accounts()]})

    run(act)


@credits.command("add")
def credits_add(
    account_id: str,
    amount: str,
    reason: str = typer.Option("credit"),
    idempotency_key: str | None = typer.Option(None),
) -> None:
    """Credit an account AMOUNT US dollars (exact decimal)."""

    async def act(s: Services) -> None:
        credit, created = await s.admin.add_credit(
            account_id, {"amount": amount, "reason": reason, "idempotency_key": idempotency_key}
        )
        emit({"data": credit_view(credit), "created": created})

    run(act)


def _key_body(
    name: str | None,
    limit: str | None,
    limit_reset: str | None,
    expires_at: str | None,
    rpm: int | None,
    tpm: int | None,
    max_concurrency: int | None,
    allowed_model: list[str],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "limit": limit,
        "limit_reset": limit_reset,
        "expires_at": expires_at,
        "rpm": rpm,
        "tpm": tpm,
        "max_concurrency": max_concurrency,
    }
    body = {k: v for k, v in body.items() if v is not None}
    if allowed_model:
        body["allowed_models"] = allowed_model
    return body


@keys.command("create")
def keys_create(
    account_id: str,
    name: str = typer.Option(...),
    limit: str | None = typer.Option(None, help="USD cap (exact decimal)"),
    limit_reset: str | None = typer.Option(None, help="daily | weekly | monthly"),
    expires_at: str | None = typer.Option(None),
    rpm: int | None = typer.Option(None),
    tpm: int | None = typer.Option(None),
    max_concurrency: int | None = typer.Option(None),
    allowed_model: list[str] = typer.Option([], help="repeatable"),
) -> None:
    """Create an inference key; the secret is printed once."""
    body = _key_body(name, limit, limit_reset, expires_at, rpm, tpm, max_concurrency, allowed_model)

    async def act(s: Services) -> None:
        secret, key = await s.admin.create_key(account_id, body)
        emit({"key": secret, "data": await s.admin.key_view(key)})

    run(act)


@keys.command("list")
def keys_list(account_id: str) -> None:
    async def act(s: Services) -> None:
        await s.admin.account(account_id)
        emit({"data": [await s.admin.key_view(k) for k in await s.store.list_keys(account_id)]})

    run(act)


@keys.command("get")
def keys_get(key_id: str) -> None:
    async def act(s: Services) -> None:
        emit({"data": await s.admin.key_view(await s.admin.key(key_id))})

    run(act)


@keys.command("update")
def keys_update(
    key_id: str,
    name: str | None = typer.Option(None),
    limit: str | None = typer.Option(None),
    limit_reset: str | None = typer.Option(None),
    expires_at: str | None = typer.Option(None),
    rpm: int | None = typer.Option(None),
    tpm: int | None = typer.Option(None),
    max_concurrency: int | None = typer.Option(None),
    disabled: bool | None = typer.Option(None),
    allowed_model: list[str] = typer.Option([]),
) -> None:
    body = _key_body(name, limit, limit_reset, expires_at, rpm, tpm, max_concurrency, allowed_model)
    if disabled is not None:
        body["disabled"] = disabled

    async def act(s: Services) -> None:
        emit({"data": await s.admin.key_view(await s.admin.update_key(key_id, body))})

    run(act)


@keys.command("revoke")
def keys_revoke(key_id: str) -> None:
    async def act(s: Services) -> None:
        emit({"data": await s.admin.key_view(await s.admin.revoke_key(key_id))})

    run(act)


@keys.command("rotate")
def keys_rotate(key_id: str, grace_seconds: int = typer.Option(0)) -> None:
    async def act(s: Services) -> None:
        secret, key = await s.admin.rotate_key(key_id, {"grace_seconds": grace_seconds})
        emit({"key": secret, "data": await s.admin.key_view(key)})

    run(act)


@management_keys.command("create")
def management_keys_create(account_id: str, name: str = typer.Option(...)) -> None:
    async def act(s: Services) -> None:
        secret, key = await s.admin.create_key(account_id, {"name": name}, scope="management")
        emit({"key": secret, "data": await s.admin.key_view(key)})

    run(act)


@ledger.command("verify")
def ledger_verify() -> None:
    """Check every ledger invariant; exits 1 when a problem is found."""

    async def act(s: Services) -> bool:
        report = await s.store.verify_ledger()
        emit(report.as_json())
        return report.ok

    if not run(act):
        raise typer.Exit(1)


@accounts.command("invite")
def accounts_invite(
    account_id: str,
    email: str = typer.Option(..., help="the person's email: they sign in to the console with it"),
    base_url: str = typer.Option(
        "http://127.0.0.1:4000", envvar="NEMO_PUBLIC_URL", help="the gateway's address as users reach it"
    ),
) -> None:
    """Invite a user of the account to the web console: prints a one-time set-password link."""
    from nemorouter.console.invites import invite

    async def act(s: Services) -> None:
        emit({"data": await invite(s, account_id, {"email": email}, base_url)})

    run(act)
