"""The limiter's lean script connection (limits/resp.py): replies parsed whole however they are
split, paired with their calls in order (also when a caller gave up), scripts Redis lacks loaded, the URL's database used, and every failure one of redis-py's RedisErrors (what the
limiter's fallback catches). Real Redis on NEMO_TEST_REDIS_URL."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nemorouter.limits.resp import Scripts, _pack, _parse

REDIS = os.environ.get("NEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ECHO = "return {tonumber(ARGV[1]) + 1, ARGV[2], {KEYS[1], 7}, false}"


@pytest.fixture
async def key() -> AsyncIterator[str]:
    name = f"nemo-test-{secrets.token_hex(6)}:resp"
    yield name
    client = aioredis.Redis.from_url(REDIS)
    await client.delete(name)
    await client.aclose()


def test_replies_are_parsed_whole_however_they_arrive() -> None:
    reply = b"*4\r\n:42\r\n$3\r\nabc\r\n*2\r\n$-1\r\n+OK\r\n-ERR no\r\n"
    value, end = _parse(bytearray(reply), 0) or (None, 0)
    assert end == len(reply)
    assert value[:3] == [42, b"abc", [None, b"OK"]]
    assert isinstance(value[3], ResponseError) and str(value[3]) == "ERR no"
    for cut in range(len(reply)):  # every prefix is incomplete, never a wrong value
        assert _parse(bytearray(reply[:cut]), 0) is None
    assert _pack(["EVALSHA", "ab", 2, "k"]) == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$1\r\nk\r\n"
    # Every other kind of part as its text, as redis-py sends it; a bool is not its integer.
    parts = [b"raw", -12, "ünï", True, 1.5, ""]
    assert _pack(parts) == b"*6\r\n" + b"".join(
        b"$%d\r\n%b\r\n" % (len(t), t) for t in (b"raw", b"-12", "ünï".encode(), b"True", b"1.5", b"")
    )


async def test_calls_pair_with_their_replies_and_lost_scripts_load_again(key: str) -> None:
    client = aioredis.Redis.from_url(REDIS)
    scripts = Scripts(client)
    assert scripts.lean
    echo = scripts.script(ECHO)
    # Many at once on the one connection, one of them given up before its reply: the others
    # still get their own.
    calls = [asyncio.ensure_future(echo(keys=[key], args=[i, f"v{i}"])) for i in range(20)]
    await asyncio.sleep(0)
    calls[3].cancel()
    for i, call in enumerate(calls):
        if i == 3:
            continue
        assert await call == [i + 1, f"v{i}".encode(), [key.encode(), 7], None]
    # A script this Redis has never seen (as after a restart; not SCRIPT FLUSH, which would take
    # the scripts of tests running beside this one too): EVALSHA says NOSCRIPT, EVAL loads it.
    body = f"{ECHO} -- {key}"
    sha = hashlib.sha1(body.encode()).hexdigest()
    assert await client.script_exists(sha) == [False]
    assert (await scripts.script(body)(keys=[key], args=[1, "x"]))[0] == 2
    assert await client.script_exists(sha) == [True]
    with pytest.raises(ResponseError):
        await scripts.script("return redis.call('NOSUCHCOMMAND')")(keys=[], args=[])
    assert (await echo(keys=[key], args=[5, "y"]))[0] == 6  # the connection is still good
    await scripts.close()
    await client.aclose()


async def test_the_urls_database_is_used(key: str) -> None:
    where = urlsplit(REDIS)
    client = aioredis.Redis.from_url(f"redis://{where.netloc}/5")
    scripts = Scripts(client)
    await scripts.script("return redis.call('SET', KEYS[1], ARGV[1])")(keys=[key], args=["here"])
    assert await client.get(key) == b"here"  # redis-py on db 5 sees it
    await client.delete(key)
    await scripts.close()
    await client.aclose()


def test_it_runs_on_uvloop_as_the_server_does(key: str) -> None:
    async def calls() -> list[object]:
        client = aioredis.Redis.from_url(REDIS)
        scripts = Scripts(client)
        echo = scripts.script(ECHO)
        found = list(await asyncio.gather(*(echo(keys=[key], args=[i, "u"]) for i in range(3))))
        await scripts.close()
        await client.aclose()
        return found

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever pytest-asyncio runs
        found = pool.submit(uvloop.run, calls()).result()
    assert [reply[0] for reply in found] == [1, 2, 3]  # type: ignore[index]


def _silent_server() -> tuple[socket.socket, int]:
    """A listener that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


async def test_failures_are_redis_errors_and_the_next_call_connects_afresh(key: str) -> None:
    server, port = _silent_server()
    try:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
        scripts = Scripts(client)
        echo = scripts.script(ECHO)
        with pytest.raises(RedisTimeoutError):
            await echo(keys=[key], args=[1, "a"])
        await scripts.close()
        await client.aclose()
    finally:
        server.close()
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2)
    scripts = Scripts(client)
    with pytest.raises(RedisConnectionError):  # nothing listens there now
        await scripts.script(ECHO)(keys=[key], args=[1, "a"])
    await client.aclose()
    # A connection Redis closes fails its calls with a RedisError; the next call reconnects.
    client = aioredis.Redis.from_url(REDIS)
    scripts = Scripts(client)
    echo = scripts.script(ECHO)
    assert (await echo(keys=[key], args=[1, "a"]))[0] == 2
    assert scripts._wire is not None and scripts._wire.transport is not None
    host, port = scripts._wire.transport.get_extra_info("sockname")[:2]
    await client.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")  # this connection only
    await asyncio.sleep(0.05)
    assert (await echo(keys=[key], args=[2, "b"]))[0] == 3
    assert isinstance(RedisConnectionError(), RedisError)
    await scripts.close()
    await client.aclose()
