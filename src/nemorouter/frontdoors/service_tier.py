"""`service_tier`: the gateway sells the standard tier, at its list prices, and nothing else.

A client's `priority` (which OpenAI bills above the standard list price) or `flex`/`scale` (other
prices again) would have the upstream bill work that the hold and the charge do not price: the
operator would pay the difference, or the customer would pay standard for cheaper work. So those
are refused with a 400 that names what is accepted; `auto` and `default` (the operator's project
setting, the standard tier unless the operator chose otherwise) pass through.
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest

ACCEPTED = ("auto", "default")


def check_service_tier(body: dict[str, Any]) -> None:
    value = body.get("service_tier")
    if value is None or value in ACCEPTED:
        return
    raise InvalidRequest(
        "`service_tier` must be auto or default: only the standard tier is offered, at its list prices"
    )
