"""The schema's migration files as shipped in the package, per backend: what `nemorouter migrate
status` lists by name (the stores apply them; this only reads their names)."""

from __future__ import annotations

from importlib import resources

BACKENDS = ("sqlite", "postgres")


def backend_of(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite:") else "postgres"


def migration_names(backend: str) -> dict[int, str]:
    """Version -> file name without `.sql` (`0003_alerts_outbox`), in version order."""
    folder = resources.files(f"nemorouter.store.{backend}") / "migrations"
    found = sorted(
        (int(f.name.split("_", 1)[0]), f.name.removesuffix(".sql"))
        for f in folder.iterdir()
        if f.name.endswith(".sql")
    )
    return dict(found)
