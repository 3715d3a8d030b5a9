"""Calls to providers through an HTTP proxy, over real sockets: a CONNECT tunnel carrying TLS to
an https origin, absolute-form requests for an http origin, the proxy's credentials, NO_PROXY,
and proxy settings read (and refused) once at start. On both event loops (conftest)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.loopback import UA, Proxy, Upstream, answer, certificate, post, served
from nemorouter.engine.http1 import Http1Client, HttpError
from nemorouter.settings import Outbound, Settings, SettingsError


@pytest.fixture
async def tls_origin(tmp_path: Path) -> AsyncIterator[tuple[Upstream, ssl.SSLContext]]:
    """An https origin (a self-signed `localhost`) and a client TLS context that trusts it."""
    cert_file, key_file = certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    up = await served(answer(b'{"via":"tunnel"}'), tls=server_tls)
    yield up, ssl.create_default_context(cafile=str(cert_file))
    await up.stop()


def outbound(**env: str) -> Outbound:
    return Outbound.from_env(env)


async def test_an_https_origin_is_reached_through_a_connect_tunnel_with_tls_inside(
    tls_origin: tuple[Upstream, ssl.SSLContext],
) -> None:
    up, trust = tls_origin
    proxy = await Proxy(credentials="ann:p@ss word").start()
    client = Http1Client(
        UA, ssl_context=trust, outbound=outbound(HTTPS_PROXY=proxy.url("ann:p%40ss%20word@"))
    )
    for _ in range(3):
        assert (await post(client, up)).body == b'{"via":"tunnel"}'
    # One tunnel, kept alive, carried all three; the proxy saw only CONNECT (the requests, and
    # the operator's key in them, crossed it encrypted).
    assert proxy.tunnels == [f"localhost:{up.port}"] and up.connections == 1 and len(up.requests) == 3
    assert len(proxy.asked) == 1 and proxy.asked[0].startswith(
        f"CONNECT localhost:{up.port} HTTP/1.1".encode()
    )
    assert b"sk-up" not in proxy.asked[0] and b"Authorization: Bearer sk-up" in up.requests[0]
    assert b"Proxy-Authorization" not in up.requests[0]  # the proxy's credentials stop at the proxy
    await client.close()
    await proxy.stop()


async def test_a_tunnel_refused_by_the_proxy_is_a_connect_error_naming_its_status(
    tls_origin: tuple[Upstream, ssl.SSLContext],
) -> None:
    up, trust = tls_origin
    proxy = await Proxy(credentials="ann:right").start()
    client = Http1Client(UA, ssl_context=trust, outbound=outbound(https_proxy=proxy.url("ann:wrong@")))
    with pytest.raises(HttpError) as caught:
        await post(client, up)
    assert caught.value.kind == "connect" and "status 407" in str(caught.value)
    assert "wrong" not in str(caught.value) and up.requests == []
    await client.close()
    await proxy.stop()
    gone = Http1Client(UA, ssl_context=trust, outbound=outbound(https_proxy=proxy.url()))
    with pytest.raises(HttpError) as caught:  # the proxy itself is down
        await post(gone, up)
    assert caught.value.kind == "connect"
    await gone.close()


async def test_no_proxy_sends_matching_origins_directly(tls_origin: tuple[Upstream, ssl.SSLContext]) -> None:
    up, trust = tls_origin
    proxy = await Proxy().start()
    for no_proxy in ("localhost", ".localhost", "*", f"localhost:{up.port}", "example.com,LOCALHOST"):
        client = Http1Client(
            UA, ssl_context=trust, outbound=outbound(HTTPS_PROXY=proxy.url(), NO_PROXY=no_proxy)
        )
        assert (await post(client, up)).body == b'{"via":"tunnel"}'
        await client.close()
    assert proxy.asked == []
    # Entries that do not match: another domain, a name that only ends the same, another port.
    for no_proxy in ("example.com", "calhost", "localhost:1", "10.0.0.0/8"):
        client = Http1Client(
            UA, ssl_context=trust, outbound=outbound(https_proxy=proxy.url(), no_proxy=no_proxy)
        )
        assert (await post(client, up)).body == b'{"via":"tunnel"}'
        await client.close()
    assert len(proxy.tunnels) == 4
    await proxy.stop()


async def test_an_http_origin_goes_through_http_proxy_in_absolute_form_and_no_proxy_by_address() -> None:
    up = await served(answer(b"{}", extra="Connection: close\r\n"))
    proxy = await Proxy(credentials="bob:s3cret").start()
    client = Http1Client(UA, outbound=outbound(http_proxy=proxy.url("bob:s3cret@")))
    assert (await post(client, up)).body == b"{}"
    head = proxy.asked[0].split(b"\r\n")
    assert head[0] == f"POST http://127.0.0.1:{up.port}/v1/x?a=1 HTTP/1.1".encode()
    assert f"Host: 127.0.0.1:{up.port}".encode() in head
    assert proxy.tunnels == [] and up.requests[0].startswith(b"POST /v1/x?a=1 HTTP/1.1")
    await client.close()
    # HTTPS_PROXY alone leaves http origins direct; NO_PROXY matches an address by CIDR block.
    for env in ({"HTTPS_PROXY": proxy.url()}, {"HTTP_PROXY": proxy.url(), "NO_PROXY": "127.0.0.0/8"}):
        direct = Http1Client(UA, outbound=outbound(**env))
        assert (await post(direct, up)).body == b"{}"
        await direct.close()
    assert len(proxy.asked) == 1 and up.connections == 3
    await proxy.stop()
    await up.stop()


def test_proxy_settings_are_read_once_at_start_and_a_bad_one_is_one_clear_error() -> None:
    found = Settings.from_env(
        {"HTTPS_PROXY": "http://ann:p%40ss@proxy.internal:3128", "no_proxy": " a.example, 10.0.0.0/8 ,"}
    ).outbound
    assert found.https_proxy is not None and found.http_proxy is None
    assert (found.https_proxy.host, found.https_proxy.port) == ("proxy.internal", 3128)
    assert found.https_proxy.authorization == "Basic YW5uOnBAc3M="  # ann:p@ss
    assert found.no_proxy == ("a.example", "10.0.0.0/8")
    assert "p%40ss" not in repr(found) and "YW5u" not in repr(found)  # never in a log line
    lower_wins = Outbound.from_env({"https_proxy": "proxy-a:8080", "HTTPS_PROXY": "http://proxy-b:8080"})
    assert lower_wins.https_proxy is not None and lower_wins.https_proxy.host == "proxy-a"
    for bad in (
        "socks5://ann:hunter2@proxy:1080",
        "https://ann:hunter2@proxy:443",
        "http://ann:hunter2@proxy:notaport",
        "http://ann:hunter2@proxy:3128/path",
        "http://ann:hunter2@:3128",
        "http://ann:hunter2@proxy:0",
    ):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({"HTTPS_PROXY": bad})
        assert "HTTPS_PROXY" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(SettingsError, match="NEMO_UPSTREAM_MAX_CONNECTIONS"):
        Settings.from_env({"NEMO_UPSTREAM_MAX_CONNECTIONS": "0"})
