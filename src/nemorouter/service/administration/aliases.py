"""Model aliases: other names a model answers to (`gpt-4o-mini` for `openai/gpt-4o-mini`), for
clients that strip a vendor prefix (litellm's `openai/` provider does). Every name (id or alias)
names one model, so a request for an alias is served, billed and recorded as that model."""

from __future__ import annotations

from typing import Any

from nemorouter.errors import Conflict, InvalidRequest
from nemorouter.store.base import Store

MAX_ALIASES = 32
MAX_LENGTH = 200


def _checked(value: Any, model_id: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ALIASES:
        raise InvalidRequest(f"`aliases` must be a list of at most {MAX_ALIASES} names")
    for alias in value:
        if (
            not isinstance(alias, str)
            or not 1 <= len(alias) <= MAX_LENGTH
            or not alias.isprintable()
            or any(c.isspace() for c in alias)
        ):
            raise InvalidRequest(f"`aliases`: each must be a name of 1 to {MAX_LENGTH} characters, no spaces")
        if alias == model_id:
            raise InvalidRequest(f"`aliases`: {alias} is the model's own id")
    if len(set(value)) != len(value):
        raise InvalidRequest("`aliases` names one alias twice")
    return sorted(value)


async def model_aliases(store: Store, body: dict[str, Any], model_id: str) -> list[str] | None:
    """The aliases `body` sets (None: it sets none, the model keeps its own), refused with a 409
    when a name is already another model's id or alias, or the model's id another's alias."""
    wanted = _checked(body["aliases"], model_id) if body.get("aliases") is not None else None
    for other in await store.list_models():
        if other.id == model_id:
            continue
        if model_id in other.aliases:
            raise Conflict(f"{model_id} is already an alias of model {other.id}", type="alias_conflict")
        for alias in wanted or ():
            if alias == other.id or alias in other.aliases:
                raise Conflict(f"alias {alias} is already a name of model {other.id}", type="alias_conflict")
    return wanted
