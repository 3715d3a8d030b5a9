"""The adapter for the Gemini API (kind `gemini`): not built yet."""

from __future__ import annotations

from nemorouter.providers.registry import Adapter

ADAPTER: Adapter | None = None
