"""Where customers' webhooks may go: public addresses only, unless the operator allows private ones.

A webhook URL is a customer's input, and the gateway POSTs to it from inside the operator's
network. Pointed at 127.0.0.1, 169.254.169.254 (a cloud's metadata service) or a 10.x host, it
would make the gateway a way in (server-side request forgery). So:

- a URL whose host is a non-global address (loopback, private, link-local, shared, reserved; an
  IPv4-mapped form included) or `localhost` is refused when it is set (a 400), and again when a
  delivery is due (it may have been set before this rule, or while it was lifted);
- a delivery resolves the name with a resolver that drops every non-global address, so a name
  that was public when it was set cannot later point inside (DNS rebinding) — refused, not retried.

The operator's own alert URL (`NEMO_OPERATOR_ALERT_URL`) is trusted and goes out unfiltered. With
an outbound proxy (HTTP(S)_PROXY) the proxy's own host is exempt: egress is controlled there.
`NEMO_WEBHOOKS_ALLOW_PRIVATE=true` lifts the rule, for receivers on the operator's own network.

The session that enforces it at delivery is `webhook_session.py` (aiohttp, loaded by the delivery
worker when it starts: the admin API and every CLI command check URLs without loading it).
"""

from __future__ import annotations

import ipaddress
import urllib.request
from urllib.parse import urlparse

REFUSED = "the webhook's host is not a public address"


class PrivateAddress(OSError):
    """A webhook's host resolved to no public address (raised inside aiohttp's connect)."""


def literal_refusal(url: str) -> str | None:
    """Why `url` may not receive webhooks, judging its host as written (no DNS), or None."""
    host = (urlparse(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return REFUSED
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: judged by the resolver at each delivery
    return None if address.is_global else REFUSED


def is_global(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_global
    except ValueError:
        return False


def proxy_hosts() -> frozenset[str]:
    """The hosts of the outbound proxies set in the environment (read as aiohttp reads them)."""
    hosts = set()
    for url in urllib.request.getproxies().values():
        host = urlparse(url if "://" in url else f"http://{url}").hostname
        if host:
            hosts.add(host.rstrip(".").lower())
    return frozenset(hosts)
