"""finalizer.testing.tcp_proxy: pass, refuse and blackhole against a real echo server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from finalizer.testing.tcp_proxy import TcpProxy, ThreadedTcpProxy
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


async def test_pass_forwards_both_ways(echo_port: int) -> None:
    async with TcpProxy("127.0.0.1", echo_port) as proxy:
        assert await _roundtrip(proxy.port) == b"ping"
        assert proxy.stats.accepted == 1
        assert proxy.stats.to_server == proxy.stats.to_client == 4
        assert proxy.url("postgresql://u@{host}:{port}/db") == f"postgresql://u@127.0.0.1:{proxy.port}/db"


async def test_refuse_resets_open_connections_and_refuses_new_ones_then_recovers(echo_port: int) -> None:
    async with TcpProxy("127.0.0.1", echo_port) as proxy:
        port = proxy.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        await proxy.set_mode("refuse")
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        await proxy.set_mode("pass")
        assert proxy.port == port
        assert await _roundtrip(port) == b"ping"


async def test_blackhole_holds_bytes_and_delivers_them_when_the_path_heals(echo_port: int) -> None:
    async with TcpProxy("127.0.0.1", echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        await proxy.set_mode("blackhole")
        writer.write(b"late")
        await writer.drain()
        await eventually(lambda: proxy.stats.held == 4, what="the proxy holds the bytes")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.3)
        # A new connection is accepted but gets no answer either.
        fresh_reader, fresh_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        fresh_writer.write(b"x")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(fresh_reader.readexactly(1), 0.3)
        await proxy.set_mode("pass")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"late"
        assert proxy.stats.held == 0
        assert await asyncio.wait_for(fresh_reader.readexactly(1), 5) == b"x"
        writer.close()
        fresh_writer.close()


async def test_cut_resets_held_connections(echo_port: int) -> None:
    async with TcpProxy("127.0.0.1", echo_port, mode="blackhole") as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        await eventually(lambda: proxy.open_connections == 1, what="the proxy holds the connection")
        assert proxy.cut() == 1
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()


async def test_unknown_mode_is_refused_with_the_valid_ones_named(echo_port: int) -> None:
    with pytest.raises(ValueError, match="pass, refuse, blackhole"):
        TcpProxy("127.0.0.1", echo_port, mode="drop")  # type: ignore[arg-type]
    async with TcpProxy("127.0.0.1", echo_port) as proxy:
        with pytest.raises(ValueError, match="unknown proxy mode 'off'"):
            await proxy.set_mode("off")  # type: ignore[arg-type]
        assert proxy.mode == "pass"


def _blocking_roundtrip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"sync")
        return sock.recv(4)


async def test_threaded_proxy_serves_blocking_clients(echo_port: int) -> None:
    with ThreadedTcpProxy("127.0.0.1", echo_port) as proxy:
        assert await asyncio.to_thread(_blocking_roundtrip, proxy.port) == b"sync"
        proxy.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(_blocking_roundtrip, proxy.port)
        proxy.set_mode("pass")
        assert await asyncio.to_thread(_blocking_roundtrip, proxy.port) == b"sync"
        assert proxy.stats.accepted == 2
