"""Prometheus metrics: what the gateway does, by model and provider — never by key or secret.

A registry per app (no process globals). Costs are counted in integer pico-USD: a float holds
integers exactly up to 2**53 pico (about 9,000 USD per series between restarts), so sums scraped
from here match the ledger exactly in that range.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from nemorouter.money import Usage

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_KINDS = ("prompt", "completion", "cached", "cache_write", "reasoning")


class Metrics:
    """The series every request touches (answers, durations, settlements, tokens, cost, open
    holds) are plain integers in dicts, turned into Prometheus families only when scraped: a
    prometheus-client child takes a lock on every `inc`, and a request touches about ten. Only
    the event loop updates and renders them, so no lock is needed. Rarer series (refusals,
    upstream failures, time to first token) are ordinary prometheus-client metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ttft = Histogram(
            "nemo_time_to_first_token_seconds",
            "Time until a stream's first upstream event arrived",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_failures = Counter(
            "nemo_upstream_failures", "Failed upstream attempts", ["provider", "kind"], registry=r
        )
        self.rate_limited = Counter(
            "nemo_rate_limited", "Requests refused by a rate limit", ["limit"], registry=r
        )
        self.open_holds = 0
        # (model, provider, status) -> [settled, prompt, completion, cached, cache_write, reasoning, cost]
        self._settled: dict[tuple[str, str, str], list[int]] = {}
        self._answers: dict[tuple[str, int], int] = {}
        # route -> [count per bucket (the last is +Inf)..., sum of seconds]
        self._durations: dict[str, list[Any]] = {}
        # (provider, provider key id) -> [operator overruns, their amount in pico-USD]
        self._overruns: dict[tuple[str, str], list[int]] = {}
        r.register(_HotSeries(self))

    def settled(self, model: str, provider: str, status: str, usage: Usage, cost: int) -> None:
        found = self._settled.get((model, provider, status))
        if found is None:
            found = self._settled[(model, provider, status)] = [0] * 7
        found[0] += 1
        found[1] += usage.prompt_tokens
        found[2] += usage.completion_tokens
        found[3] += usage.cached_tokens
        found[4] += usage.cache_write_tokens
        found[5] += usage.reasoning_tokens
        found[6] += cost

    def overrun(self, provider: str, provider_key: str, amount: int) -> None:
        """A provider reported more than a hold covered: the difference is the operator's."""
        found = self._overruns.setdefault((provider, provider_key), [0, 0])
        found[0] += 1
        found[1] += amount

    def released(self, model: str) -> None:
        """A request that failed before output: counted, never charged."""
        self.settled(model, "", "error", Usage(), 0)

    def answered(self, route: str, status: int, seconds: float | None) -> None:
        """One HTTP answer on an inference route (`seconds` for complete answers)."""
        key = (route, status)
        self._answers[key] = self._answers.get(key, 0) + 1
        if seconds is not None:
            found = self._durations.get(route)
            if found is None:
                found = self._durations[route] = [0] * (len(_LATENCY_BUCKETS) + 1) + [0.0]
            found[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
            found[-1] += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _HotSeries:
    """A prometheus-client custom collector over the plain counters of `Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Any]:
        m = self._m
        http = CounterMetricFamily(
            "nemo_http_requests", "HTTP requests on the inference routes", labels=["route", "status"]
        )
        for (route, code), count in m._answers.items():
            http.add_metric([route, str(code)], count)
        duration = HistogramMetricFamily(
            "nemo_request_duration_seconds", "Time to the full answer (inference routes)", labels=["route"]
        )
        for route, counts in m._durations.items():
            buckets, running = [], 0
            for bound, count in zip((*_LATENCY_BUCKETS, float("inf")), counts[:-1], strict=True):
                running += count
                buckets.append((_le(bound), running))
            duration.add_metric([route], buckets, sum_value=counts[-1])
        generations = CounterMetricFamily(
            "nemo_generations", "Settled requests", labels=["model", "provider", "status"]
        )
        tokens = CounterMetricFamily("nemo_tokens", "Tokens billed", labels=["model", "provider", "kind"])
        cost = CounterMetricFamily("nemo_cost_picousd", "Charged, in pico-USD", labels=["model", "provider"])
        charged: dict[tuple[str, str], int] = {}
        for (model, provider, status), values in m._settled.items():
            generations.add_metric([model, provider, status], values[0])
            if status == "error":
                continue
            for kind, count in zip(_TOKEN_KINDS, values[1:6], strict=True):
                tokens.add_metric([model, provider, kind], count)
            charged[(model, provider)] = charged.get((model, provider), 0) + values[6]
        for (model, provider), total in charged.items():
            cost.add_metric([model, provider], total)
        holds = GaugeMetricFamily("nemo_open_holds", "Requests holding money right now", value=m.open_holds)
        overruns = CounterMetricFamily(
            "nemo_operator_overruns",
            "Requests whose provider reported more than their hold covered (the operator's cost)",
            labels=["provider", "provider_key"],
        )
        overrun_cost = CounterMetricFamily(
            "nemo_operator_overrun_picousd",
            "Reported cost above the holds, in pico-USD: absorbed by the operator, never charged",
            labels=["provider", "provider_key"],
        )
        for (provider, provider_key), (count, amount) in m._overruns.items():
            overruns.add_metric([provider, provider_key], count)
            overrun_cost.add_metric([provider, provider_key], amount)
        yield from (http, duration, generations, tokens, cost, holds, overruns, overrun_cost)


def _le(bound: float) -> str:
    """prometheus-client's spelling of a bucket bound (`0.005`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
