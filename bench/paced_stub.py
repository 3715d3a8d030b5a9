"""Paced upstream stub for the streams scenario: a model that sends one token event every interval.

stub.py (uvicorn, ASGI) costs ~17 µs of CPU per event; at 2,000 streams and 10 events a second each
that is a third of a core, and on a busy 2-core machine the stub fell behind (connections waiting
in its accept queue for seconds): the scenario then measured the stub. This one speaks just enough
HTTP/1.1 on a raw asyncio protocol (uvloop), with every byte precomputed and one timer per stream,
for a few µs per event. It answers what bench/streams.py sends:

  GET /healthz                   200
  POST /v1/chat/completions      401 without a bearer key; with `"stream": true`: a role event, then
                                 `max_tokens` (16 if absent) token events `--interval` s apart on a
                                 fixed schedule (a late one does not push back the next), then the
                                 finish, the usage (12 prompt tokens, `max_tokens` completion) and
                                 [DONE], chunked; without: stub.py's chat.completion

    python bench/paced_stub.py --port 9001 --interval 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import uvloop

from stub import CHAT_BODY, STREAM_CHUNKS, _chunk, _delta

PROMPT_TOKENS = 12
ROLE_CHUNK = STREAM_CHUNKS[0]
TOKEN_CHUNK = _chunk(_delta({"content": " tok"}))
FINISH_CHUNK = _chunk(_delta({}, "stop"))


def framed(chunk: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(chunk), chunk)


FRAMED_TOKEN = framed(TOKEN_CHUNK)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n" + framed(ROLE_CHUNK)
)


def response(status: str, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


HEALTHY = response("200 OK", b'{"ok":true}')
CHAT = response("200 OK", CHAT_BODY)
UNAUTHORIZED = response("401 Unauthorized", b'{"error":{"message":"missing bearer key"}}')
NOT_FOUND = response("404 Not Found", b'{"error":{"message":"no route"}}')


def tail(tokens: int) -> bytes:
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": tokens,
        "total_tokens": PROMPT_TOKENS + tokens,
    }
    chunks = [FINISH_CHUNK, _chunk([], usage), b"data: [DONE]\n\n"]
    return b"".join(framed(c) for c in chunks) + b"0\r\n\r\n"


class PacedHttp(asyncio.Protocol):
    """One client connection: keep-alive requests, one at a time (no pipelining is needed)."""

    interval = 0.1

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None  # uvloop's, which writes at once
        self.timer: asyncio.TimerHandle | None = None
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.streaming and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            headers = dict(
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(":") for line in lines[1:])
            )
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path, *_ = [*lines[0].split(" "), "", ""]
            self.answer(method, path, headers.get("authorization", ""), body)

    def answer(self, method: str, path: str, auth: str, body: bytes) -> None:
        assert self.transport is not None
        if method == "GET" and path == "/healthz":
            self.transport.write(HEALTHY)
        elif method != "POST" or path != "/v1/chat/completions":
            self.transport.write(NOT_FOUND)
        elif not auth.lower().startswith("bearer ") or len(auth) <= 7:
            self.transport.write(UNAUTHORIZED)
        else:
            doc = orjson.loads(body) if body else {}
            if doc.get("stream") is not True:
                self.transport.write(CHAT)
                return
            tokens = int(doc.get("max_tokens") or doc.get("max_completion_tokens") or 16)
            self.streaming = True
            self.transport.write(STREAM_HEAD)
            if tokens < 1:
                self.transport.write(tail(0))
                self.streaming = False
                return
            self.schedule(time.monotonic(), 1, tokens)

    def schedule(self, start: float, index: int, tokens: int) -> None:
        """Token `index` goes at start + index * interval (a fixed schedule: lateness is not carried)."""
        delay = max(0.0, start + index * self.interval - time.monotonic())
        self.timer = asyncio.get_running_loop().call_later(delay, self.send_token, start, index, tokens)

    def send_token(self, start: float, index: int, tokens: int) -> None:
        if self.transport is None:
            return
        if index < tokens:
            self.transport.write(FRAMED_TOKEN)
            self.schedule(start, index + 1, tokens)
            return
        self.transport.write(FRAMED_TOKEN + tail(tokens))  # the last token, then at once the rest
        self.timer, self.streaming = None, False
        self.data_received(b"")  # a request that came while streaming


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(PacedHttp, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between token events (default 0.1)"
    )
    args = parser.parse_args()
    PacedHttp.interval = args.interval
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
