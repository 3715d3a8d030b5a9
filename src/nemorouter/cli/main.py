"""The `nemorouter` command."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import typer
from typer.exceptions import TyperException

from nemorouter import logs
from nemorouter.cli import admin_cmds, audit_cmds, migrate_cmds, report_cmds
from nemorouter.cli.common import emit, fail, run
from nemorouter.service.container import Services, close_services, initialize, open_services
from nemorouter.settings import Settings, SettingsError
from nemorouter.store.base import StoreError
from nemorouter.vault import VaultError

app = typer.Typer(
    help="NemoRouter: one key, one bill, every model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(admin_cmds.providers, name="providers")
app.add_typer(admin_cmds.models, name="models")
app.add_typer(admin_cmds.accounts, name="accounts")
app.add_typer(admin_cmds.credits, name="credits")
app.add_typer(admin_cmds.keys, name="keys")
app.add_typer(admin_cmds.management_keys, name="management-keys")
app.add_typer(admin_cmds.ledger, name="ledger")
app.add_typer(audit_cmds.audit, name="audit")
app.add_typer(migrate_cmds.migrate, name="migrate")
app.command("usage")(report_cmds.usage)
app.command("statement")(report_cmds.statement)
app.command("reconcile")(report_cmds.reconcile_command)


@app.command()
def init() -> None:
    """Create the data dir, master key, schema and bundled catalog (idempotent)."""

    async def act(services: Services) -> None:
        applied, loaded, token = await initialize(services)
        emit(
            {
                "data_dir": str(services.settings.data_dir),
                "migrations_applied": applied,
                "catalog_models": loaded,
            }
        )
        if token:
            typer.echo(
                f"operator token (shown once; set NEMO_ADMIN_TOKEN to use your own): {token}", err=True
            )

    run(act, create=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(4000),
    workers: int = typer.Option(1, help="processes; more than 1 needs PostgreSQL and Redis"),
) -> None:
    """Serve every HTTP API."""
    from nemorouter.cli.server import serve as run_server
    from nemorouter.cli.server import serve_workers, shared_state_problem

    settings = Settings.from_env()
    if workers < 1:
        fail("--workers must be at least 1")
    check_vault(settings)
    if workers == 1:
        run_server(settings, host, port)
        return
    problem = shared_state_problem(settings)
    if problem is not None:
        fail(problem)
    serve_workers(settings, host, port, workers)


def check_vault(settings: Settings) -> None:
    """Before serving: a master key that does not open the vault (or none at all) is one
    `error:` line and exit 1, not a traceback and a server with no providers."""

    logs.configure(settings.log_level)  # what opening says (a tightened file mode) is a log line

    async def check() -> None:
        await close_services(await open_services(settings))

    try:
        asyncio.run(check())
    except (VaultError, StoreError) as exc:
        fail(str(exc))
    except (OSError, sqlite3.Error) as exc:  # e.g. a SQLite path that cannot be created
        fail(f"cannot open the database {settings.database_url.split('@')[-1]}: {exc}")
    except Exception:  # anything else: the server's own start reports it as it always has
        return


@app.command()
def sim(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(4010),
    key: list[str] = typer.Option([], help="accepted provider key (repeatable); default: any sk-sim-..."),
) -> None:
    """The provider simulator (see docs/simulator.md)."""
    from nemorouter.sim.server import run_sim

    run_sim(host, port, set(key) or None)


@app.command()
def demo(port: int = typer.Option(4000), sim_port: int = typer.Option(4010)) -> None:
    """Set up (or reuse) the demo account on the simulator and serve: what `make run` does."""
    from nemorouter.cli import demo as demo_mod
    from nemorouter.cli.server import serve as run_server

    settings = Settings.from_env()
    sim_proc = demo_mod.start_sim(sim_port)

    async def setup() -> tuple[str, str | None]:
        services = await open_services(settings, create=True)
        try:
            return await demo_mod.prepare(services, sim_port)
        finally:
            await close_services(services)

    try:
        try:
            key, token = asyncio.run(setup())
        except (VaultError, StoreError) as exc:
            fail(str(exc))
        text = demo_mod.banner(key, "127.0.0.1", port, token)
        run_server(settings, "127.0.0.1", port, on_ready=lambda: print(text, flush=True))
    finally:
        if sim_proc is not None:
            sim_proc.terminate()
            sim_proc.wait(timeout=10)


def main() -> None:
    """Run the command; a usage mistake is one `error:` line on stderr, never a box or a traceback."""
    try:
        code = app(standalone_mode=False)
    except TyperException as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {message}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["main", "run"]
