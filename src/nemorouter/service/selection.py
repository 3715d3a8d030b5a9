"""Which targets to try, in what order: routing priorities and weights, the request's provider
preferences, and the health of each deployment and vault key. Each becomes the dispatcher's
`Attempt`."""

from __future__ import annotations

import random

from nemorouter.engine.dispatch import Attempt
from nemorouter.engine.health import Health
from nemorouter.providers.canonical import ProviderPrefs
from nemorouter.service.routing import Route, Target, adapter_of

MAX_ATTEMPTS = 6  # before the first byte, across every model of the request


def health_names(target: Target) -> tuple[str, str]:
    """Breakers are per deployment; provider rate limits per vault key and deployment (providers
    limit a key per model, so one model's 429 must not idle the key for every model)."""
    return f"deployment:{target.deployment.id}", f"key:{target.key.id}:{target.deployment.id}"


def attempt_of(target: Target, deployment: str, key: str) -> Attempt[Target]:
    """`deployment` and `key`: the target's `health_names`."""
    return Attempt(
        adapter_of(target),
        target.upstream(),
        target.timeouts,
        deployment,
        key,
        target.provider.name,
        target.deployment.id,
        target.key.id,
        target,
    )


def _allowed(target: Target, prefs: ProviderPrefs) -> bool:
    name = target.provider.name
    if prefs.only is not None and name not in prefs.only:
        return False
    if name in prefs.ignore:
        return False
    if prefs.max_prompt is not None and target.prices.input > prefs.max_prompt:
        return False
    return prefs.max_completion is None or target.prices.output <= prefs.max_completion


def _ordered(targets: list[Target], prefs: ProviderPrefs, health: Health) -> list[Target]:
    if prefs.sort == "price":
        targets = sorted(targets, key=lambda t: t.prices.input + t.prices.output)
    elif prefs.sort == "latency":
        # Unmeasured targets go last: a known-fast provider beats an unknown one.
        targets = sorted(targets, key=lambda t: health.latency_ms(health_names(t)[0]) or float("inf"))
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}
        listed = sorted((t for t in targets if t.provider.name in rank), key=lambda t: rank[t.provider.name])
        rest = [t for t in targets if t.provider.name not in rank]
        targets = listed + (rest if prefs.allow_fallbacks else [])
    elif not prefs.allow_fallbacks and targets:
        first = targets[0].provider.name
        targets = [t for t in targets if t.provider.name == first]
    return targets


def candidates(
    routes: list[Route], prefs: ProviderPrefs | None, health: Health, rng: random.Random
) -> tuple[list[Attempt[Target]], float | None]:
    """Attempts in order; healthy targets only (an open breaker or a cool-down skips a target).

    Also returns, when targets were skipped because their providers asked us to wait, the
    shortest such wait (so "everyone is rate-limiting us" can be told apart from "nothing works").
    """
    out: list[Attempt[Target]] = []
    waits: list[float] = []
    for route in routes:
        targets = route.targets(rng)
        if prefs is not None:
            targets = _ordered([t for t in targets if _allowed(t, prefs)], prefs, health)
        for target in targets:
            deployment, key = health_names(target)
            # Every target is asked (an expired breaker admits its probe here), MAX_ATTEMPTS tried.
            if health.available(deployment) and health.available(key):
                if len(out) < MAX_ATTEMPTS:
                    out.append(attempt_of(target, deployment, key))
            else:
                waits += [w for w in (health.rate_limited_for(deployment), health.rate_limited_for(key)) if w]
    return out, (min(waits) if waits else None)
