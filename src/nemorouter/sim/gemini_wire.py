"""The simulator's Gemini wire format: not built yet."""

from __future__ import annotations

from starlette.routing import Route


def routes() -> list[Route]:
    return []
