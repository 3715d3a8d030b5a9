"""`nemorouter audit list|verify`: the audit log of admin and management actions."""

from __future__ import annotations

import typer

from nemorouter.cli.common import emit, run
from nemorouter.service import audit as audit_service
from nemorouter.service.container import Services

audit = typer.Typer(help="The audit log of admin and management actions.", no_args_is_help=True)


@audit.command("list")
def audit_list(
    actor: str | None = typer.Option(None, help="admin | cli:USER | management_key:ID | ..."),
    action: str | None = typer.Option(None, help="e.g. key.create"),
    account: str | None = typer.Option(None, help="entries about this account"),
    target: str | None = typer.Option(None, help="entries naming this id"),
    limit: int = typer.Option(100, min=1, max=100_000),
) -> None:
    """The newest entries first, as JSON."""

    async def act(s: Services) -> None:
        found = await s.store.list_audit(
            actor=actor, action=action, account_id=account, target=target, limit=limit
        )
        emit({"data": [audit_service.view(r) for r in found]})

    run(act)


@audit.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exits 1 when an entry was changed, removed or reordered."""

    async def act(s: Services) -> bool:
        problems, count = await s.store.verify_audit()
        emit({"ok": not problems, "problems": problems, "entries": count})
        return not problems

    if not run(act):
        raise typer.Exit(1)
