"""The adapter for the Anthropic Messages API (kind `anthropic`): not built yet."""

from __future__ import annotations

from nemorouter.providers.registry import Adapter

ADAPTER: Adapter | None = None
