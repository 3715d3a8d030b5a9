"""Slow and oversized clients, over raw sockets: a client that sends its headers or body byte by
byte is cut after the documented timeout (408 in the contract's shape, then closed); one that
connects and says nothing is closed; headers over the limit get 431; the server keeps serving."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Gateway, new_gateway

HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 1.5
# The server sets deadlines by its event loop's clock, which (libuv) counts whole milliseconds: a
# deadline can fall up to 1 ms before the moment this side measured from.
CLOCK_GRAIN = 0.002


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = new_gateway(tmp_path_factory.mktemp("slow-clients"), None)
    gateway.env["NEMO_CLIENT_HEADER_TIMEOUT"] = str(HEADER_TIMEOUT)
    gateway.env["NEMO_CLIENT_BODY_TIMEOUT"] = str(BODY_TIMEOUT)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


def trickle(gw: Gateway, data: bytes, every: float = 0.2, limit: float = 10.0) -> tuple[bytes, float]:
    """Send `data` one byte every `every` seconds until the server answers or closes; what it
    answered and after how long."""
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.settimeout(every)
    started = time.monotonic()
    answer = b""
    try:
        for i in range(len(data)):
            if time.monotonic() - started > limit:
                break
            try:
                sock.sendall(data[i : i + 1])
                chunk = sock.recv(65536)
            except TimeoutError:
                continue  # no answer yet: the next byte
            except OSError:
                break  # closed by the server
            answer += chunk
            if not chunk or b"}}" in answer:
                break
    finally:
        sock.close()
    return answer, time.monotonic() - started


def error_of(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    error = json.loads(body)["error"]
    assert error["code"] == status and error["type"] and error["message"]
    return status, error


def test_headers_sent_byte_by_byte_are_cut_after_the_header_timeout(gw: Gateway) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    answer, took = trickle(gw, request)
    status, error = error_of(answer)
    assert (status, error["type"]) == (408, "request_timeout")
    assert HEADER_TIMEOUT - CLOCK_GRAIN <= took < HEADER_TIMEOUT + 3


def test_a_body_sent_byte_by_byte_is_cut_after_the_body_timeout(gw: Gateway) -> None:
    body = b'{"items": [' + b" " * 200 + b"]}"
    head = b"POST /v1/leaks HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
    head += b"content-length: %d\r\n\r\n" % len(body)
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(head)  # the headers at once: the body deadline starts now
    started = time.monotonic()
    sock.settimeout(0.2)
    answer = b""
    for i in range(len(body)):
        try:
            sock.sendall(body[i : i + 1])
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        answer += chunk
        if not chunk or b"}" in answer:
            break
    took = time.monotonic() - started
    sock.close()
    status, error = error_of(answer)
    assert (status, error["type"]) == (408, "request_timeout")
    assert "body" in str(error["message"])
    assert BODY_TIMEOUT - CLOCK_GRAIN <= took < BODY_TIMEOUT + 3


def test_a_silent_connection_is_closed(gw: Gateway) -> None:
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.settimeout(HEADER_TIMEOUT + 5)
    started = time.monotonic()
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    took = time.monotonic() - started
    sock.close()
    assert HEADER_TIMEOUT - CLOCK_GRAIN <= took < HEADER_TIMEOUT + 3
    assert error_of(answer)[0] == 408


@pytest.mark.parametrize("size", [70 * 1024, 4 * 1024 * 1024])
def test_oversized_headers_get_431_and_the_server_stays_up(gw: Gateway, size: int) -> None:
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.settimeout(10)
    answer, reset = b"", False
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionError:
        reset = True  # closed while we were still sending megabytes: the kernel may drop the 431
    finally:
        sock.close()
    if answer or not reset or size < 1024 * 1024:
        status, error = error_of(answer)
        assert (status, error["type"]) == (431, "headers_too_large")
    assert httpx.get(f"{gw.url}/healthz").status_code == 200


def test_normal_requests_with_a_large_body_and_keep_alive_still_work(gw: Gateway, tmp_path: Path) -> None:
    items = [{"token": "x" * 1000} for _ in range(500)]  # ~0.5 MB, far past the header limit
    with httpx.Client(base_url=gw.url) as client:
        for _ in range(3):
            resp = client.post("/v1/leaks", json={"items": items})
            assert resp.status_code == 202, resp.text
            assert client.get("/healthz").status_code == 200
            time.sleep(HEADER_TIMEOUT + 0.5)  # idle on a kept-alive connection is not a slow client
