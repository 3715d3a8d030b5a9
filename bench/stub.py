"""Upstream stub: a fast fake OpenAI provider, so the benchmark measures the proxy and not a model.

Raw ASGI on uvicorn+uvloop+httptools with precomputed response bytes: the stub must be cheaper than
anything put in front of it. It accepts any bearer key but rejects a missing one (401), which proves
that the proxies in front of it forward Authorization.

    python bench/stub.py --port 9001
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL = "gpt-4o-mini"
CREATED = int(time.time())
COMPLETION_ID = "chatcmpl-bench0000000000000000000001"
USAGE = {"prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28}

CHAT_BODY = orjson.dumps(
    {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        "system_fingerprint": "fp_bench",
    }
)


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    payload = {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": choices,
    }
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _delta(delta: dict[str, str], finish: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]


# Sent as separate ASGI messages so a proxy sees a real multi-chunk stream.
STREAM_CHUNKS = [
    _chunk(_delta({"role": "assistant", "content": ""})),
    _chunk(_delta({"content": "Hello!"})),
    _chunk(_delta({"content": " How can I help you today?"})),
    _chunk(_delta({}, "stop")),
    _chunk([], USAGE),
    b"data: [DONE]\n\n",
]


def _embeddings_body(count: int) -> bytes:
    data = [
        {"object": "embedding", "index": i, "embedding": [0.0125, -0.025, 0.05, 0.1] * 4}
        for i in range(count)
    ]
    usage = {"prompt_tokens": 8 * count, "total_tokens": 8 * count}
    return orjson.dumps({"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage})


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    )


async def _read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _json(body: bytes) -> dict[str, Any]:
    """Lenient parse: the stub answers malformed bodies too, it is not the thing under test."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _embedding_count(body: bytes) -> int:
    """One vector per input string or token list, as OpenAI does."""
    inp = _json(body).get("input")
    if isinstance(inp, list) and inp and not isinstance(inp[0], int):
        return len(inp)
    return 1


async def _send(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path == "/healthz":
        await _send(send, 200, b'{"ok":true}')
        return
    body = await _read_body(receive)
    auth = dict(scope["headers"]).get(b"authorization", b"")
    if method != "POST" or path not in ("/v1/chat/completions", "/v1/embeddings"):
        await _send(send, *_error(404, f"no route {method} {path}"))
    elif auth[:7].lower() != b"bearer " or len(auth) <= 7:
        await _send(send, *_error(401, "missing bearer key"))
    elif path == "/v1/embeddings":
        await _send(send, 200, _embeddings_body(_embedding_count(body)))
    elif b'"stream"' in body and _json(body).get("stream") is True:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in STREAM_CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await _send(send, 200, CHAT_BODY)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
