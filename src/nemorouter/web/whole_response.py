"""A whole response (status, headers, a body of known length) written to uvicorn in one step.

Through ASGI a response is two `send` calls into uvicorn's RequestResponseCycle, which checks each
header with two regular expressions, one call each, and parses its own content-length back. The hot
routes' answers are whole when they are sent, so this writes the bytes uvicorn would (its status
line, its default headers, then the app's, and `connection: close` where it would add it) and leaves
the cycle as its own `send` does once a response is complete. Header names and values are checked
as uvicorn checks them: all names with one search, all values with another.

It declines (returns False, and the app sends through ASGI) wherever uvicorn's path could act
otherwise: a `send` that is not a cycle's own (wrapped, as for a browser's request), a response
already started, a disconnected client, a paused transport, a HEAD request, uvicorn's access log
on, a header that steers framing (`connection`, `transfer-encoding`), a content-length other than
the body's (or none), or a header uvicorn would refuse. tests/app/test_whole_response.py holds it
to uvicorn's own bytes over a real socket.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

_FRAMING = frozenset((b"connection", b"transfer-encoding"))


def write_whole(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Write the response whole if `send` is a cycle's own and nothing asks for uvicorn's path;
    True when it was written. `headers` carry the body's content-length, as uvicorn needs."""
    cycle = getattr(send, "__self__", None)
    if (
        type(cycle) is not RequestResponseCycle
        or cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
        or cycle.access_log
        or cycle.scope["method"] == "HEAD"
        or status not in STATUS_LINE
    ):
        return False
    if HEADER_RE.search(b"".join(name for name, _ in headers)) or HEADER_VALUE_RE.search(
        b"".join(value for _, value in headers)
    ):
        return False  # uvicorn raises for it: let it, on its own path
    parts = [STATUS_LINE[status]]
    for name, value in cycle.default_headers:
        parts += (name.lower(), b": ", value, b"\r\n")
    length = b"%d" % len(body)
    sized = False
    for name, value in headers:
        name = name.lower()
        if name in _FRAMING or (name == b"content-length" and (sized or value != length)):
            return False
        sized = sized or name == b"content-length"
        parts += (name, b": ", value, b"\r\n")
    if not sized:
        return False
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    # As uvicorn's `send` leaves a cycle whose response is complete (httptools_impl, 0.54).
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True
