"""The in-memory routing table: models, deployments, providers and decrypted vault keys.

Loaded from the store and reloaded when the store's config version moves (checked at most
every `check_interval` seconds), so admin changes made by any process reach every replica.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nemorouter.money import Prices
from nemorouter.providers.registry import Adapter, adapter_for
from nemorouter.providers.types import Upstream
from nemorouter.settings import Timeouts
from nemorouter.store.base import Store
from nemorouter.store.records import Deployment, Model, Provider
from nemorouter.vault import Secret, Vault, VaultError

T = TypeVar("T")
log = logging.getLogger("nemorouter.routing")
_KEYLESS = "keyless"  # a deployment whose provider has no usable vault key (logged per provider)


@dataclass(frozen=True, slots=True)
class VaultKey:
    id: str
    weight: int
    secret: Secret


@dataclass(frozen=True, slots=True)
class Target:
    """One way to serve a model: a deployment, its provider, and one of the provider's keys."""

    model: Model
    deployment: Deployment
    provider: Provider
    key: VaultKey
    prices: Prices
    price_version_id: int

    @property
    def timeouts(self) -> Timeouts | None:
        """The provider's own timeouts (`config.timeouts`), over the defaults; None when it sets none."""
        return timeouts_from(self.provider.config)

    def upstream(self) -> Upstream:
        return Upstream(
            model=self.deployment.upstream_model,
            base_url=self.provider.base_url,
            secret=self.key.secret.reveal(),
            max_output=self.model.max_output,
            config=self.provider.config,
        )


@dataclass(frozen=True, slots=True)
class Route:
    model: Model
    deployments: tuple[tuple[Deployment, Provider, tuple[VaultKey, ...]], ...]
    fixed: tuple[Target, ...] | None = None  # the one possible order, when there is no choice
    prices: tuple[Prices, ...] = ()  # of every deployment, for sizing holds

    def prices_of(self, deployment: Deployment) -> tuple[Prices, int]:
        if deployment.prices is not None and deployment.price_version_id is not None:
            return deployment.prices, deployment.price_version_id
        return self.model.prices, self.model.price_version_id

    def all_prices(self) -> list[Prices]:
        return [self.prices_of(dep)[0] for dep, _, _ in self.deployments]

    def targets(self, rng: random.Random) -> list[Target]:
        """Attempt order: by priority; weighted shuffle within a priority; a weighted key each."""
        if self.fixed is not None:
            return list(self.fixed)
        by_priority: dict[int, list[tuple[Deployment, Provider, tuple[VaultKey, ...]]]] = defaultdict(list)
        for entry in self.deployments:
            by_priority[entry[0].priority].append(entry)
        out: list[Target] = []
        for priority in sorted(by_priority):
            for dep, provider, keys in _weighted_order(by_priority[priority], lambda e: e[0].weight, rng):
                prices, version = self.prices_of(dep)
                for key in _weighted_order(list(keys), lambda k: k.weight, rng)[:2]:
                    out.append(Target(self.model, dep, provider, key, prices, version))
        return out


def _weighted_order(items: list[T], weight: Callable[[T], int], rng: random.Random) -> list[T]:
    """A weighted random permutation (Efraimidis-Spirakis): heavier items tend to come first."""
    if len(items) <= 1:
        return list(items)
    keyed = [(rng.random() ** (1.0 / max(1, weight(item))), i) for i, item in enumerate(items)]
    return [items[i] for _, i in sorted(keyed, reverse=True)]


class RoutingTable:
    def __init__(self, store: Store, vault: Vault, check_interval: float = 0.25) -> None:
        self._store = store
        self._vault = vault
        self._check_interval = check_interval
        self._checked_at = 0.0
        self._version = -1
        self.version = -1  # the config version last loaded; caches of config-derived data key on it
        self._routes: dict[str, Route] = {}
        self._models: list[Model] = []
        self.problems: list[str] = []
        self.on_change: Callable[[int], None] | None = None  # told of this process's own changes

    async def refresh(self, force: bool = False) -> None:
        """Reload if the config version moved (checked at most every `check_interval`); `force`
        reloads now, after a change made by this process, and tells `on_change` (other replicas)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self._check_interval:
            return
        self._checked_at = now
        version = await self._store.config_version()
        if version == self._version and not force:
            return
        previous = self._version
        self.version = -1  # invalidates dependent caches while loading
        await self._load()
        self._version = self.version = version
        if force and self.on_change is not None and previous >= 0:
            self.on_change(version)

    async def recheck(self) -> None:
        """Check the config version now (another replica said it moved); reload if it did."""
        self._checked_at = 0.0
        await self.refresh()

    async def _load(self) -> None:
        providers = {p.id: p for p in await self._store.list_providers()}
        keys: dict[str, list[VaultKey]] = defaultdict(list)
        problems = []
        for pk in await self._store.list_provider_keys():
            provider = providers.get(pk.provider_id)
            if provider is None or pk.disabled or pk.quarantined_at:
                continue
            try:
                secret = self._vault.decrypt(provider.name, pk.id, pk.envelope)
            except VaultError as exc:
                problems.append(f"provider {provider.name}: {exc}; the key is not used")
                continue
            keys[pk.provider_id].append(VaultKey(pk.id, max(1, pk.weight), secret))
        routes: dict[str, Route] = {}
        models = await self._store.list_models()
        keyless: dict[str, list[str]] = defaultdict(list)  # provider name -> models it cannot serve
        for model in models:
            usable = []
            for dep in model.deployments:
                if dep.disabled:
                    continue
                problem = _unusable(model, dep, providers, keys)
                if problem is None:
                    usable.append((dep, providers[dep.provider_id], tuple(keys[dep.provider_id])))
                elif problem == _KEYLESS:
                    keyless[providers[dep.provider_id].name].append(model.id)
                elif problem:
                    problems.append(problem)
            if usable:
                route = Route(model, tuple(usable))
                fixed = None
                if len(usable) == 1 and len(usable[0][2]) == 1:
                    fixed = tuple(route.targets(random.Random()))
                routes[model.id] = Route(model, tuple(usable), fixed, tuple(route.all_prices()))
            elif model.deployments:
                # Deployed, but nothing can serve it now (keys quarantined or disabled, providers
                # off): the model exists, and requests for it get 503, not 404.
                routes[model.id] = Route(model, (), (), ())
        for model in models:  # an alias routes as its model: served, billed and recorded as it
            for alias in model.aliases:
                if model.id in routes and alias not in routes:
                    routes[alias] = routes[model.id]
        for name, model_ids in sorted(keyless.items()):
            problems.append(
                f"provider {name} has no usable vault key (none added, or all disabled, quarantined or"
                f" not decryptable): {len(model_ids)} deployment(s) cannot serve, e.g. model {model_ids[0]}"
            )
        self._routes = routes
        self._models = models
        for problem in problems:
            if problem not in self.problems:  # each once while it lasts, not on every reload
                log.warning(f"routing problem: {problem}")
        self.problems = problems

    def route(self, model_id: str) -> Route | None:
        return self._routes.get(model_id)

    def servable_models(self) -> list[Model]:
        return [
            self._routes[m.id].model
            for m in self._models
            if m.id in self._routes and self._routes[m.id].deployments
        ]


def _unusable(
    model: Model,
    dep: Deployment,
    providers: Mapping[str, Provider],
    keys: Mapping[str, list[VaultKey]],
) -> str | None:
    """Why an enabled deployment cannot serve: a problem to log, `_KEYLESS` (its provider has no
    usable key, logged once per provider), "" for an operator's choice (its provider disabled),
    or None when it can serve."""
    where = f"deployment {dep.id} of model {model.id}"
    provider = providers.get(dep.provider_id)
    if provider is None:
        return f"{where} names provider {dep.provider_id}, which does not exist"
    if provider.disabled:
        return ""
    if adapter_for(provider.kind) is None:
        return f"{where}: provider {provider.name} has kind {provider.kind}, which no adapter serves"
    if not keys.get(dep.provider_id):
        return _KEYLESS  # one line per provider, not per deployment
    return None


def adapter_of(target: Target) -> Adapter:
    adapter = adapter_for(target.provider.kind)
    if adapter is None:  # routing only admits kinds with an adapter
        raise RuntimeError(f"no adapter for provider kind {target.provider.kind}")
    return adapter


def timeouts_from(config: Mapping[str, Any]) -> Timeouts | None:
    raw = config.get("timeouts")
    if not isinstance(raw, dict):
        return None
    defaults = Timeouts()
    values = {
        name: float(raw.get(name, getattr(defaults, name)))
        for name in ("connect", "first_byte", "idle", "total")
    }
    return Timeouts(**values)
