"""A request's head on the wire: where a URL's requests go (worked out once per URL) and the
header lines of each, refused whole if a name or value could not be sent as it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from nemorouter.engine.pool import OriginPool
from nemorouter.settings import ProxyServer

# RFC 9110 5.1 and 5.5: a name is a token; a value is visible ASCII, space, tab or obs-text (a
# Latin-1 byte). A CR or LF would end the line and start a header of the caller's choosing; a NUL
# or another control character is refused by servers (or worse, read differently by each hop); a
# name with ": " in it would pass for a name and the start of a value.
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Names found valid: the adapters' few constants, so a request's names cost a set lookup each.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_KEPT = 1024


class InvalidHeader(ValueError):
    """A request header that cannot be sent: refused before anything goes out. The message
    names the header, never its value (it may be a secret)."""


Route = Callable[[bool, str, int], tuple[ProxyServer | None, OriginPool]]  # (tls, host, port) ->


class Origin:
    """Where a URL's requests go (directly, or through a proxy) and the start of their head;
    `route` names the proxy (or None) and the pool of connections for (tls, host, port)."""

    def __init__(self, url: str, user_agent: str, route: Route) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        proxy, self.pool = route(self.tls, self.host, self.port)
        default_port = parts.port is None or parts.port == (443 if self.tls else 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        authority = name if default_port else f"{name}:{self.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Through a proxy, an https origin's connection is a tunnel (CONNECT) that carries TLS to
        # the origin, so its requests are as if direct; an http origin's requests go to the
        # proxy itself, in absolute form and with the proxy's credentials (RFC 9112 3.2.2).
        self.proxy = proxy
        self.tunnel = proxy is not None and self.tls
        self.dial_host = proxy.host if proxy is not None else self.host
        self.dial_port = proxy.port if proxy is not None else self.port
        credentials = ""
        if proxy is not None and not self.tls:
            target = f"http://{authority}{target}"
            if proxy.authorization is not None:
                credentials = f"Proxy-Authorization: {proxy.authorization}\r\n"
        self.head = (
            f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n{credentials}"
        )


def encode_head(origin: Origin, headers: dict[str, str], length: int) -> bytes:
    """The whole head: the origin's start, `headers` (each checked), Content-Length."""
    lines = [origin.head]
    plain = True  # every value printable ASCII and every name known valid: nothing more to check
    for name, value in headers.items():
        if not (value.isascii() and value.isprintable()) or name not in _VALID_NAMES:
            plain = False
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    if not plain:
        _check(headers)
    return "".join(lines).encode("latin-1")


def _check(headers: dict[str, str]) -> None:
    """The exact rule, for what the quick test could not pass: InvalidHeader naming the first
    header that breaks it (tabs and Latin-1 letters are fine)."""
    for name, value in headers.items():
        if _NAME.fullmatch(name) is None:
            raise InvalidHeader(f"the request header name {name[:40]!r} is not a valid HTTP header name")
        if _VALUE.fullmatch(value) is None:
            raise InvalidHeader(
                f"the request header {name} has a character not allowed in an HTTP header value"
                " (CR, LF, NUL, another control character, or one outside Latin-1)"
            )
        if len(_VALID_NAMES) < _VALID_NAMES_KEPT:
            _VALID_NAMES.add(name)
