"""Plain records the store hands out: no driver types ever leave the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nemorouter.money import Prices


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    email: str | None
    total_credits: int
    total_usage: int
    held: int
    created_at: str
    rpm: int | None = None
    tpm: int | None = None

    @property
    def balance(self) -> int:
        return self.total_credits - self.total_usage


@dataclass(frozen=True, slots=True)
class Credit:
    id: str
    account_id: str
    amount: int
    reason: str
    idempotency_key: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    account_id: str
    scope: str
    name: str
    hint: str
    limit: int | None
    limit_reset: str | None
    window_start: str
    window_usage: int
    usage: int
    held: int
    expires_at: str | None
    disabled: bool
    revoked_at: str | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    allowed_models: tuple[str, ...] | None
    created_at: str
    updated_at: str
    account_rpm: int | None = None  # the operator's limits for the whole account (filled by find_key)
    account_tpm: int | None = None

    def usage_in_window(self, window: str) -> int:
        return self.window_usage if self.window_start == window else 0


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    kind: str
    base_url: str
    config: dict[str, Any]
    disabled: bool
    created_at: str


@dataclass(frozen=True, slots=True)
class ProviderKey:
    id: str
    provider_id: str
    label: str
    weight: int
    fingerprint: str
    envelope: str
    disabled: bool
    quarantined_at: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    model_id: str
    provider_id: str
    upstream_model: str
    priority: int
    weight: int
    price_version_id: int | None
    prices: Prices | None
    disabled: bool


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    mode: str
    context_length: int
    max_output: int
    price_version_id: int
    prices: Prices
    created_at: str
    updated_at: str
    deployments: tuple[Deployment, ...] = field(default=())
    aliases: tuple[str, ...] = field(default=())  # other names it answers to, sorted


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    vendor: str
    model_id: str
    mode: str
    pricing: dict[str, Any]
    context_length: int
    max_output: int
    source: str


@dataclass(slots=True, init=False)
class Hold:
    """The worst case of one request, reserved before it is sent; also the start of its record."""

    request_id: str
    account_id: str
    key_id: str
    amount: int
    window: str
    owner: str
    created_at: str
    model: str = ""
    endpoint: str = "chat"
    streamed: bool = False

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        request_id: str,
        account_id: str,
        key_id: str,
        amount: int,
        window: str,
        owner: str,
        created_at: str,
        model: str = "",
        endpoint: str = "chat",
        streamed: bool = False,
    ) -> None:
        self.request_id = request_id
        self.account_id = account_id
        self.key_id = key_id
        self.amount = amount
        self.window = window
        self.owner = owner
        self.created_at = created_at
        self.model = model
        self.endpoint = endpoint
        self.streamed = streamed


@dataclass(slots=True, init=False)
class ReserveResult:
    """`reason` is `ok`, `insufficient_credits`, `key_limit_exceeded`, `key_revoked`,
    `key_disabled`, `key_expired` or `key_missing`; `available` is what could have been held."""

    reason: str
    available: int = 0

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(self, reason: str, available: int = 0) -> None:
        self.reason = reason
        self.available = available

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


@dataclass(slots=True, init=False)
class Generation:
    id: str
    account_id: str
    key_id: str
    model: str
    endpoint: str
    streamed: bool
    status: str
    created_at: str
    provider: str | None = None
    upstream_model: str | None = None
    deployment_id: str | None = None
    provider_key_id: str | None = None
    cancelled: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    cost: int = 0
    hold: int = 0
    price_version_id: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    raw_usage: str | None = None
    unit: str | None = None  # a request priced per unit: the unit it was billed in
    units: int = 0  # and how many

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        id: str,
        account_id: str,
        key_id: str,
        model: str,
        endpoint: str,
        streamed: bool,
        status: str,
        created_at: str,
        provider: str | None = None,
        upstream_model: str | None = None,
        deployment_id: str | None = None,
        provider_key_id: str | None = None,
        cancelled: bool = False,
        finish_reason: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        reasoning_tokens: int = 0,
        cost: int = 0,
        hold: int = 0,
        price_version_id: int | None = None,
        latency_ms: int | None = None,
        error: str | None = None,
        raw_usage: str | None = None,
        unit: str | None = None,
        units: int = 0,
    ) -> None:
        self.id = id
        self.account_id = account_id
        self.key_id = key_id
        self.model = model
        self.endpoint = endpoint
        self.streamed = streamed
        self.status = status
        self.created_at = created_at
        self.provider = provider
        self.upstream_model = upstream_model
        self.deployment_id = deployment_id
        self.provider_key_id = provider_key_id
        self.cancelled = cancelled
        self.finish_reason = finish_reason
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cached_tokens = cached_tokens
        self.cache_write_tokens = cache_write_tokens
        self.cache_write_1h_tokens = cache_write_1h_tokens
        self.reasoning_tokens = reasoning_tokens
        self.cost = cost
        self.hold = hold
        self.price_version_id = price_version_id
        self.latency_ms = latency_ms
        self.error = error
        self.raw_usage = raw_usage
        self.unit = unit
        self.units = units


@dataclass(slots=True, init=False)
class Outcome:
    """How a request ended besides its usage and cost: what its Generation records of it."""

    cancelled: bool = False
    finish_reason: str | None = None
    raw_usage: dict[str, Any] | None = None  # the provider's usage object, as it sent it
    error: str | None = None

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        cancelled: bool = False,
        finish_reason: str | None = None,
        raw_usage: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self.cancelled = cancelled
        self.finish_reason = finish_reason
        self.raw_usage = raw_usage
        self.error = error


@dataclass(frozen=True, slots=True)
class Overrun:
    """A provider reported more than the request's hold covers: the customer was charged
    `charged` (never above `hold`); `overrun` (reported cost minus charge) is the operator's.
    `reported_cost` and `overrun` may exceed any 64-bit amount (an untrusted report)."""

    request_id: str
    account_id: str
    key_id: str
    model: str
    provider: str | None
    provider_key_id: str | None
    deployment_id: str | None
    hold: int
    charged: int
    reported_cost: int
    overrun: int
    reason: str
    raw_usage: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """`problems` break an invariant; `overruns` (the operator's, by request) and `notes` (e.g. a
    limit lowered below what its key had spent) are reported but are not problems."""

    problems: list[str]
    overruns: int
    overrun_list: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """The answer of `ledger verify` (admin API and CLI)."""
        return {
            "ok": self.ok,
            "problems": self.problems,
            "overruns": self.overruns,
            "overrun_requests": self.overrun_list,
            "notes": self.notes,
        }


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Charged requests of one account summed at the finest grain a report needs: one UTC day,
    key, model, provider, price snapshot and unit (of a model priced per unit: requests billed in
    different tiers are different rows). `cost` is an exact Python-int sum (pico-USD)."""

    day: str
    key_id: str
    model: str
    provider: str | None
    price_version_id: int | None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: int = 0
    unit: str | None = None
    units: int = 0

    @classmethod
    def of(cls, group: UsageGroupKey, totals: Sequence[int]) -> UsageRow:
        """A row from its group (day, key, model, provider, price version, unit) and its sums
        (requests, prompt, completion, cached, cache write, reasoning tokens, cost, units)."""
        day, key_id, model, provider, version, unit = group
        requests, prompt, completion, cached, cache_write, reasoning, cost, units = totals
        return cls(
            day, key_id, model, provider, version, requests, prompt, completion, cached, cache_write,
            reasoning, cost, unit, units,
        )  # fmt: skip


UsageGroupKey = tuple[str, str, str, str | None, int | None, str | None]
