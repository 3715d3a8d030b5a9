"""Billing report commands: `usage` (JSON or CSV) and `statement` (JSON, CSV, HTML or PDF)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from nemorouter.cli.common import emit, fail, run
from nemorouter.errors import NemoError
from nemorouter.service.accounting import reconcile
from nemorouter.service.accounting.reports import (
    GROUP_BY,
    STATEMENT_FORMATS,
    Reports,
    parse_format,
    parse_group_by,
    parse_month,
    usage_json,
    usage_range,
)
from nemorouter.service.accounting.statement_render import render_statement, usage_csv
from nemorouter.service.container import Services


def usage(
    account_id: str,
    since: str | None = typer.Option(
        None, "--from", help="first day, YYYY-MM-DD (UTC); default: this month's"
    ),
    until: str | None = typer.Option(None, "--to", help="day after the last, YYYY-MM-DD (excluded)"),
    group_by: str = typer.Option("day", help=" | ".join(GROUP_BY)),
    format: str = typer.Option("json", help="json | csv"),
) -> None:
    """An account's usage over a date range, grouped; exact sums."""
    try:
        group = parse_group_by(group_by)
        fmt = parse_format(format, ("json", "csv"))
    except NemoError as exc:
        fail(exc.message)

    async def act(s: Services) -> None:
        await s.admin.account(account_id)
        start, end = usage_range(since, until, s.clock().date())
        groups = await Reports(s.store).usage(account_id, start, end, group)
        if fmt == "csv":
            sys.stdout.write(usage_csv(groups, group))
            sys.stdout.flush()
        else:
            emit(usage_json(groups, group, start, end))

    run(act)


def statement(
    account_id: str,
    month: str = typer.Option(..., help="YYYY-MM (UTC)"),
    format: str = typer.Option("json", help=" | ".join(STATEMENT_FORMATS)),
    output: Path | None = typer.Option(None, help="write to this file (required for pdf on a terminal)"),
) -> None:
    """An account's statement for one month."""
    try:
        fmt = parse_format(format, STATEMENT_FORMATS)
    except NemoError as exc:
        fail(exc.message)
    if fmt == "pdf" and output is None and sys.stdout.isatty():
        fail("a PDF needs --output FILE (or redirect standard output to a file)")

    async def act(s: Services) -> None:
        now = s.clock()
        start, end = parse_month(month, now.date())
        account = await s.admin.account(account_id)
        body = render_statement(await Reports(s.store).statement(account, start, end, now), fmt)
        if output is None:
            sys.stdout.buffer.write(body + (b"\n" if fmt == "json" else b""))
            sys.stdout.flush()
            return
        try:
            output.write_bytes(body)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
        emit(
            {
                "data": {
                    "account_id": account_id,
                    "month": month,
                    "format": fmt,
                    "output": str(output),
                    "bytes": len(body),
                }
            }
        )

    run(act)


def reconcile_command(
    provider: str = typer.Option(..., help="provider name"),
    month: str = typer.Option(..., help="YYYY-MM"),
    invoice: Path | None = typer.Option(
        None, help="the provider's usage export: date,model,category,tokens,amount"
    ),
) -> None:
    """Per provider key and day, what we metered at list price; with --invoice, the lines that differ."""
    invoice_text = invoice.read_text() if invoice is not None else None

    async def act(s: Services) -> None:
        rows = await reconcile.provider_month(s.store, provider, month, s.clock().date())
        out: dict[str, Any] = {"provider": provider, "month": month, "data": reconcile.by_key_and_day(rows)}
        out["overruns"] = await reconcile.provider_overruns(s.store, provider, month, s.clock().date())
        if invoice_text is not None:
            ours = await reconcile.our_lines(s.store, rows)
            out["differences"] = reconcile.differences(ours, reconcile.parse_invoice(invoice_text))
        emit(out)

    run(act)
