"""The OpenAI chat door's stream loop: a Relay's frames to the client, compiled.

It runs once per event of every open stream, so it is compiled (tools/build_native.py) and
calls the Relay directly. It is apart from `streaming.py`, whose response stays interpreted:
compiled, its `finally` (which awaits the disconnect watcher's end) let a caught
CancelledError escape at the end of every stream (mypyc 2.4.1).
"""

from __future__ import annotations

from starlette.types import Send

from nemorouter.service.relay import Relay


async def pump(relay: Relay, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    """The answer's head, then every frame the relay makes, each batch in one write."""
    # The first frames before the answer's head: a stream that fails here settles all the same.
    frames = await relay.more()
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    while frames:
        await send({"type": "http.response.body", "body": frames, "more_body": True})
        frames = await relay.more()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
