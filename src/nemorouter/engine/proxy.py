"""Calls to providers through an HTTP proxy: which origins bypass it (NO_PROXY) and the CONNECT
tunnel an https origin's TLS goes through. Chosen once per URL, never per request."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from nemorouter.engine.connection import HttpError
from nemorouter.settings import Outbound, ProxyServer

MAX_TUNNEL_ANSWER = 16 * 1024  # the proxy's answer to CONNECT: a status line and a few headers


class ProxyRules:
    """`Outbound`'s proxies and NO_PROXY, as curl reads them: `*` bypasses every origin; a name
    matches itself and its subdomains (`example.com`, `.example.com` and `*.example.com` alike);
    an address or CIDR block matches origins given by address; `:port` limits an entry to it."""

    def __init__(self, outbound: Outbound) -> None:
        self.https = outbound.https_proxy
        self.http = outbound.http_proxy
        self.everything = "*" in outbound.no_proxy
        self.names: list[tuple[str, int]] = []  # (domain, port or 0 for any)
        self.networks: list[tuple[IPv4Network | IPv6Network, int]] = []
        for entry in outbound.no_proxy:
            self._add(entry)

    def _add(self, entry: str) -> None:
        host, port = entry, 0
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            host, _, rest = entry[1:].partition("]")
            port = int(rest[1:]) if rest[1:].isdigit() else 0
        elif entry.count(":") == 1:
            name, _, number = entry.partition(":")
            if number.isdigit():
                host, port = name, int(number)
        try:
            self.networks.append((ip_network(host, strict=False), port))
        except ValueError:
            self.names.append((host.removeprefix("*").lstrip("."), port))

    def proxy_for(self, tls: bool, host: str, port: int) -> ProxyServer | None:
        """The proxy an origin's requests go through, or None: directly."""
        proxy = self.https if tls else self.http
        if proxy is None or self.everything:
            return None
        host = host.lower().rstrip(".")
        address: IPv4Address | IPv6Address | None
        try:
            address = ip_address(host)
        except ValueError:
            address = None
        for network, only in self.networks:
            if address is not None and address in network and only in (0, port):
                return None
        for name, only in self.names:
            if name and (host == name or host.endswith("." + name)) and only in (0, port):
                return None
        return proxy


async def open_tunnel(sock: socket.socket, proxy: ProxyServer, host: str, port: int) -> None:
    """Ask the proxy on `sock` for a tunnel to host:port (CONNECT); returns once it is open, the
    socket then carrying the origin's bytes. A refusal is a `connect` error naming its status."""
    loop = asyncio.get_running_loop()
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    credentials = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{credentials}\r\n"
    await loop.sock_sendall(sock, request.encode("latin-1"))
    answer = b""
    while b"\r\n\r\n" not in answer:
        piece = await loop.sock_recv(sock, 4096)
        if not piece:
            raise HttpError("connect", "the proxy closed the connection instead of opening a tunnel")
        answer += piece
        if len(answer) > MAX_TUNNEL_ANSWER:
            raise HttpError("connect", "the proxy's answer to CONNECT was too long")
    head, _, rest = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = status_line[1] if len(status_line) > 1 and status_line[0].startswith(b"HTTP/1.") else b""
    if not (len(status) == 3 and status.startswith(b"2") and status.isdigit()):
        shown = status.decode("latin-1") if status.isdigit() else "unreadable"
        raise HttpError("connect", f"the proxy refused the tunnel (status {shown})")
    if rest:  # the origin speaks only after our TLS hello: bytes here are not the origin's
        raise HttpError("connect", "the proxy sent bytes after opening the tunnel")
