"""GET /metrics: the Prometheus text, with business data only for those allowed to see it.

CONTRACT: open unless NEMO_METRICS_TOKEN is set (then a bearer token). Money per model is the
operator's business data, so an open /metrics leaves it out. The rule, for every series now and
to come (service/metrics.py): a series is *business data* when its name carries `picousd` (every
money series is counted in pico-USD and named so) or it has an `account` / `account_id` label.
Business series are shown only when NEMO_METRICS_TOKEN is set (and presented: it is then needed
for any scrape), or when the operator opts in with NEMO_METRICS_PUBLIC_MONEY=1.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from nemorouter.errors import AuthError
from nemorouter.service.container import Services

MONEY_MARK = "picousd"
BUSINESS_LABELS = frozenset({"account", "account_id"})


def is_business(family: Any) -> bool:
    """Money (by name) or naming an account (by label): see the module docstring."""
    if MONEY_MARK in family.name:
        return True
    return any(BUSINESS_LABELS.intersection(sample.labels) for sample in family.samples)


class _Public:
    """The registry without its business series (generate_latest only calls `collect`)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        return (family for family in self._registry.collect() if not is_business(family))


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    token = settings.metrics_token
    if token is not None:
        given = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise AuthError("the metrics need the NEMO_METRICS_TOKEN bearer token")
    assert services.gateway is not None
    registry = services.gateway.metrics.registry
    everything = token is not None or settings.metrics_public_money
    return Response(
        generate_latest(registry if everything else _Public(registry)),
        media_type=CONTENT_TYPE_LATEST,
    )
