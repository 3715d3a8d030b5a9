"""Request sizing that needs the routing table: the output the hold covers and the prompt-bound
rules of the deployments that may serve. (Parsing a client's body is its front door's job:
frontdoors/.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from nemorouter.errors import InvalidRequest
from nemorouter.providers.bounds import PromptRules, prompt_rules

if TYPE_CHECKING:
    from nemorouter.service.routing import Target


def held_output(requested: int | None, model_maxes: list[int], n: int) -> int:
    """Output tokens the hold covers: n choices of the client's limit, else of the largest
    `max_output` among the models that may serve (each upstream is sent its own, never more)."""
    limit = requested if requested is not None else max(model_maxes, default=0)
    if limit < 1:
        raise InvalidRequest("this model has no known output limit; send `max_completion_tokens`")
    return limit * n


def prompt_rules_of(targets: Iterable[Target]) -> PromptRules:
    """The prompt-bound rules of the deployments that may serve: worst image, largest window."""
    return prompt_rules(
        (t.provider.kind, t.deployment.upstream_model, t.model.context_length) for t in targets
    )
