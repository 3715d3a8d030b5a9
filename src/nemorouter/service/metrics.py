"""Prometheus metrics: what the gateway does, by model and provider — never by key or secret.

A registry per app (no process globals). Costs are counted in integer pico-USD: a float holds
integers exactly up to 2**53 pico (about 9,000 USD per series between restarts), so sums scraped
from here match the ledger exactly in that range.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from nemorouter.money import Usage

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http = Counter(
            "nemo_http_requests", "HTTP requests on the inference routes", ["route", "status"], registry=r
        )
        self.duration = Histogram(
            "nemo_request_duration_seconds",
            "Time to the full answer (inference routes)",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "nemo_time_to_first_token_seconds",
            "Time until a stream's first upstream event arrived",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.generations = Counter(
            "nemo_generations", "Settled requests", ["model", "provider", "status"], registry=r
        )
        self.tokens = Counter("nemo_tokens", "Tokens billed", ["model", "provider", "kind"], registry=r)
        self.cost = Counter("nemo_cost_picousd", "Charged, in pico-USD", ["model", "provider"], registry=r)
        self.upstream_failures = Counter(
            "nemo_upstream_failures", "Failed upstream attempts", ["provider", "kind"], registry=r
        )
        self.rate_limited = Counter(
            "nemo_rate_limited", "Requests refused by a rate limit", ["limit"], registry=r
        )
        self.open_holds = Gauge("nemo_open_holds", "Requests holding money right now", registry=r)
        self._settled: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        self._answers: dict[tuple[str, int], tuple[Any, Any]] = {}

    def settled(self, model: str, provider: str, status: str, usage: Usage, cost: int) -> None:
        # `labels()` takes a lock and builds a key each call: resolve each series once.
        found = self._settled.get((model, provider, status))
        if found is None:
            tokens = self.tokens
            found = self._settled[(model, provider, status)] = (
                self.generations.labels(model, provider, status),
                tokens.labels(model, provider, "prompt"),
                tokens.labels(model, provider, "completion"),
                tokens.labels(model, provider, "cached"),
                tokens.labels(model, provider, "cache_write"),
                tokens.labels(model, provider, "reasoning"),
                self.cost.labels(model, provider),
            )
        generations, prompt, completion, cached, writes, reasoning, charged = found
        generations.inc()
        prompt.inc(usage.prompt_tokens)
        completion.inc(usage.completion_tokens)
        if usage.cached_tokens:
            cached.inc(usage.cached_tokens)
        if usage.cache_write_tokens:
            writes.inc(usage.cache_write_tokens)
        if usage.reasoning_tokens:
            reasoning.inc(usage.reasoning_tokens)
        charged.inc(cost)

    def answered(self, route: str, status: int, seconds: float | None) -> None:
        """One HTTP answer on an inference route (`seconds` for complete answers)."""
        found = self._answers.get((route, status))
        if found is None:
            found = self._answers[(route, status)] = (
                self.http.labels(route, str(status)),
                self.duration.labels(route),
            )
        found[0].inc()
        if seconds is not None:
            found[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
