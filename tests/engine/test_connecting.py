"""How the client opens and spends connections, over real sockets on loopback: happy-eyeballs
connects past an address that never answers, the per-origin cap and its queue, and the one
retry of a request whose kept-alive connection the provider had closed. On both event loops."""

from __future__ import annotations

import asyncio
import socket

import pytest

from engine.loopback import UA, Blackhole, Upstream, answer, deadline, post, served
from nemorouter.engine.dial import Address, interleaved
from nemorouter.engine.http1 import Http1Client, HttpError, Response
from nemorouter.settings import Outbound

HEADERS = {"Authorization": "Bearer sk-up"}


def resolving_to(*hosts: str) -> tuple[list[str], object]:
    """A resolver that answers `provider.test` with `hosts`, in that order, and records asks."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[Address]:
        asked.append(host)
        return [(socket.AF_INET, (address, port)) for address in hosts]

    return asked, resolve


async def test_a_silent_first_address_costs_the_happy_eyeballs_delay_not_the_connect_timeout() -> None:
    up = await served(answer(b'{"ok":1}'))
    hole = Blackhole("127.0.0.2", up.port)  # the same port, on an address that never answers
    asked, resolve = resolving_to("127.0.0.2", "127.0.0.1")
    url = f"http://provider.test:{up.port}/v1/x"
    client = Http1Client(UA, resolver=resolve)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = await client.request(url, HEADERS, b"{}", 5.0, deadline(10.0))
    elapsed = loop.time() - started
    assert got.body == b'{"ok":1}' and asked == ["provider.test"] and 0.2 <= elapsed < 1.5
    assert f"Host: provider.test:{up.port}".encode() in up.requests[0]
    await client.close()
    # The same addresses without the race: the silent one holds the connect until its timeout.
    patient = Http1Client(UA, resolver=resolve, happy_eyeballs_delay=30.0)  # type: ignore[arg-type]
    with pytest.raises(HttpError) as caught:
        await patient.request(url, HEADERS, b"{}", 0.5, deadline(10.0))
    assert caught.value.kind == "timeout" and up.connections == 1
    await patient.close()
    hole.close()
    await up.stop()


async def test_a_refused_first_address_moves_on_at_once_and_all_refused_is_a_connect_error() -> None:
    up = await served(answer(b"{}"))
    _, resolve = resolving_to("127.0.0.3", "127.0.0.1")  # nothing listens on 127.0.0.3
    client = Http1Client(UA, resolver=resolve, happy_eyeballs_delay=30.0)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await client.request(f"http://provider.test:{up.port}/", HEADERS, b"{}", 5.0, deadline())).body
    assert loop.time() - started < 1.0
    _, nowhere = resolving_to("127.0.0.3", "127.0.0.4")
    lost = Http1Client(UA, resolver=nowhere)  # type: ignore[arg-type]
    with pytest.raises(HttpError) as caught:
        await lost.request(f"http://provider.test:{up.port}/", HEADERS, b"{}", 5.0, deadline())
    assert caught.value.kind == "connect"
    await client.close()
    await lost.close()
    await up.stop()


def test_address_families_are_interleaved_first_family_first() -> None:
    v6 = [(socket.AF_INET6, (f"::{i}", 443, 0, 0)) for i in (1, 2, 3)]
    v4 = [(socket.AF_INET, (f"10.0.0.{i}", 443)) for i in (1, 2)]
    assert interleaved([*v6, *v4]) == [v6[0], v4[0], v6[1], v4[1], v6[2]]
    assert interleaved([v4[0], *v6]) == [v4[0], v6[0], v6[1], v6[2]]


def capped(cap: int, keepalive: float = 30.0) -> Http1Client:
    return Http1Client(UA, keepalive=keepalive, outbound=Outbound(max_connections_per_origin=cap))


async def slots_add_up(client: Http1Client) -> bool:
    """At rest, each origin's slots are exactly its open connections: none lost, none doubled."""
    await asyncio.sleep(0.05)  # closes are reported by the loop (connection_lost) a moment later
    return all(pool.slots == len(pool.open) for pool in client._pools.values())


async def test_the_per_origin_cap_queues_requests_and_never_opens_more_sockets() -> None:
    async def slowly(writer: asyncio.StreamWriter, request: bytes) -> None:
        await asyncio.sleep(0.05)
        await answer(request[-8:])(writer, request)

    up = await served(slowly)
    client = capped(2)
    bodies = [b'{"n":%03d}' % i for i in range(10)]
    got = await asyncio.gather(*(post(client, up, body) for body in bodies))
    assert [r.body for r in got] == [b[-8:] for b in bodies]  # each answer to its own request
    assert up.connections == 2 and up.most_open == 2 and client.open_connections() == 2
    # Answers that close their connection free a slot each time: the queue still drains.
    closing = await served(answer(b"{}", extra="Connection: close\r\n"))
    got = await asyncio.gather(*(post(client, closing) for _ in range(6)))
    assert all(r.status == 200 for r in got) and closing.most_open <= 2 and closing.connections == 6
    assert await slots_add_up(client)
    await client.close()
    await up.stop()
    await closing.stop()


async def test_a_queued_request_waits_no_longer_than_its_deadline_and_leaves_no_slot_behind() -> None:
    async def slowly(writer: asyncio.StreamWriter, request: bytes) -> None:
        await asyncio.sleep(0.4)
        await answer(b"{}")(writer, request)

    up = await served(slowly)
    client = capped(1)
    first = asyncio.create_task(post(client, up))
    await asyncio.sleep(0.05)
    with pytest.raises(HttpError) as caught:
        await post(client, up, within=0.1)
    assert caught.value.kind == "timeout" and "free" in str(caught.value)
    cancelled = asyncio.create_task(post(client, up))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (await first).status == 200
    assert (await post(client, up)).status == 200  # the one connection, put back and reused
    assert up.connections == 1 and len(up.requests) == 2
    assert await slots_add_up(client)
    await client.close()
    await up.stop()


def closes_reused_connections(reply_first: bytes = b"", abort: bool = False) -> tuple[Upstream, object]:
    """A provider that answers a connection's first request and closes the connection when the
    next one arrives (as one whose idle timeout ran out just as the request was sent), or
    first writes `reply_first` of an answer and then closes."""
    seen: set[asyncio.StreamWriter] = set()

    async def reply(writer: asyncio.StreamWriter, request: bytes) -> None:
        if writer not in seen:
            seen.add(writer)
            await answer(b'{"fresh":true}')(writer, request)
            return
        if reply_first:
            writer.write(reply_first)
            await writer.drain()
        if abort:
            writer.transport.abort()  # a reset, not an orderly close
        else:
            writer.close()

    return Upstream(reply), reply


@pytest.mark.parametrize("abort", [False, True])
async def test_a_reused_connection_closed_before_any_answer_is_retried_once_on_a_new_one(abort: bool) -> None:
    up, _ = closes_reused_connections(abort=abort)
    await up.start()
    client = capped(4)
    assert (await post(client, up)).body == b'{"fresh":true}'
    got: Response = await post(client, up)  # sent on the kept connection, which the provider closes
    assert got.body == b'{"fresh":true}' and up.connections == 2 and len(up.requests) == 3
    stream = await post(client, up, idle=1.0)  # the same for a stream's request
    assert stream.status == 200 and up.connections == 3
    stream.close()
    assert await slots_add_up(client)
    await client.close()
    await up.stop()


async def test_no_retry_on_a_new_connection_or_once_the_answer_has_begun() -> None:
    async def silent(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.close()

    up = await served(silent)
    client = capped(4)
    with pytest.raises(HttpError) as caught:  # a new connection: the provider's own failure
        await post(client, up)
    assert caught.value.kind == "broken" and up.connections == 1
    partial, _ = closes_reused_connections(reply_first=b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{")
    await partial.start()
    await post(client, partial)
    with pytest.raises(HttpError) as caught:  # it began to answer: maybe it acted on the request
        await post(client, partial)
    assert caught.value.kind == "broken" and partial.connections == 1 and len(partial.requests) == 2
    assert await slots_add_up(client)
    await client.close()
    await up.stop()
    await partial.stop()


async def test_a_connection_the_provider_closed_while_idle_is_never_used() -> None:
    async def closes_when_idle(writer: asyncio.StreamWriter, request: bytes) -> None:
        await answer(b"{}")(writer, request)
        await asyncio.sleep(0.05)
        writer.close()

    up = await served(closes_when_idle)
    client = capped(1)
    for _ in range(3):
        assert (await post(client, up)).body == b"{}"
        await asyncio.sleep(0.15)
    assert up.connections == 3 and len(up.requests) == 3  # never sent on a closed one
    await client.close()
    await up.stop()


async def test_a_connection_handed_to_a_waiting_request_and_closed_meanwhile_is_retried() -> None:
    async def answers_then_closes(writer: asyncio.StreamWriter, request: bytes) -> None:
        await answer(b"{}")(writer, request)  # keep-alive by the answer's headers, yet closed
        writer.close()

    up = await served(answers_then_closes)
    client = capped(1)
    got = await asyncio.gather(*(post(client, up, within=3.0) for _ in range(4)))
    assert [r.body for r in got] == [b"{}"] * 4 and up.connections == 4 and up.most_open == 1
    assert await slots_add_up(client)
    await client.close()
    await up.stop()


async def test_a_request_started_on_a_connection_already_closed_fails_at_once_as_broken() -> None:
    """The hand-over above can also lose the race the other way: the close is seen before the
    waiting request starts. Nothing is sent; `broken` before any answer, so it is retried."""
    up = await served(answer(b"{}"))
    client = capped(1)
    await post(client, up)
    (pool,) = client._pools.values()
    conn = pool.idle[0]
    conn.abort()
    started = conn.start(b"POST / HTTP/1.1\r\n\r\n", b"", deadline(5.0), None)
    with pytest.raises(HttpError) as caught:
        await asyncio.wait_for(started, 1.0)
    assert caught.value.kind == "broken" and conn.died_unanswered(caught.value)
    assert len(up.requests) == 1
    await client.close()
    await up.stop()
