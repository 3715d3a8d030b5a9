"""The aiohttp session customers' webhooks are sent with: a resolver that keeps public addresses
only (destinations.py says why), and the environment's proxy settings honoured."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from nemorouter.service.alerting.destinations import REFUSED, PrivateAddress, is_global, proxy_hosts


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's threaded resolver, keeping only global addresses (but for `exempt` hosts)."""

    def __init__(self, exempt: frozenset[str] = frozenset()) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._exempt = exempt

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if host.rstrip(".").lower() in self._exempt:
            return found
        public = [entry for entry in found if is_global(entry["host"])]
        if not public:
            raise PrivateAddress(REFUSED)
        return public

    async def close(self) -> None:
        await self._inner.close()


def customer_session(timeout: aiohttp.ClientTimeout, allow_private: bool) -> aiohttp.ClientSession:
    """The session customers' webhooks are sent with (proxy settings honoured, as for all calls)."""
    connector = None if allow_private else aiohttp.TCPConnector(resolver=PublicOnlyResolver(proxy_hosts()))
    return aiohttp.ClientSession(timeout=timeout, trust_env=True, connector=connector)
