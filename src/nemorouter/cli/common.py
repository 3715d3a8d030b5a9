"""What every CLI command shares: services from the environment, JSON output, one-line errors."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from nemorouter import jsonx
from nemorouter.errors import NemoError
from nemorouter.money.amounts import MoneyFormatError
from nemorouter.service import audit
from nemorouter.service.container import Services, close_services, open_services
from nemorouter.settings import Settings
from nemorouter.store.base import StoreError
from nemorouter.vault import VaultError

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def emit(data: Any) -> None:
    sys.stdout.write(jsonx.dumps(data).decode() + "\n")
    sys.stdout.flush()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return str(os.getuid())


def run(action: Callable[[Services], Awaitable[T]], *, create: bool = False) -> T:
    """Open the services, run one action, close; any known failure becomes one line on stderr."""

    settings = Settings.from_env()
    sqlite_path = settings.database_url.removeprefix("sqlite:///")
    if not create and sqlite_path != settings.database_url and not Path(sqlite_path).exists():
        fail(f"no database at {settings.database_url}: run `nemorouter init` first")

    async def main() -> T:
        audit.set_actor(f"cli:{_user()}")  # the CLI's changes are recorded as the local operator's
        services = await open_services(settings, create=create)
        try:
            if not create:
                if await services.store.get_meta("config_version") is None:
                    fail("the database is not initialized: run `nemorouter init` first")
                if await services.store.pending_migrations():
                    fail(
                        "the database schema is out of date: run `nemorouter migrate up` (or `nemorouter init`)"
                    )
            return await action(services)
        finally:
            await close_services(services)

    try:
        return asyncio.run(main())
    except NemoError as exc:
        fail(exc.message)
    except (StoreError, VaultError, MoneyFormatError) as exc:
        fail(str(exc))
    except Exception as exc:
        if exc.__class__.__name__ == "OperationalError":
            fail(f"database error: {exc} (did you run `nemorouter init`?)")
        raise
