"""Reading a request body within the size limit: the one reader of the hot routes (app/fast.py)
and the framework's (app/http.py). A body known to be over the limit, by its Content-Length or
by what has arrived, is refused with 413 at once, never read whole."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import Message, Receive

from nemorouter.errors import RequestTooLarge


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The raw Content-Length of ASGI `headers`, or None."""
    for name, value in headers:
        if name == b"content-length":
            return value
    return None


async def receive_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The body from ASGI `receive`; `declared` is the raw Content-Length header, if any."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            raise RequestTooLarge("the client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """A framework route's body, refused with 413 as soon as it is known to exceed `limit` (never
    read whole)."""
    return await receive_body(request.receive, declared_length(request.scope["headers"]), limit)
