"""A TCP proxy for fault tests: put it in front of a server (PostgreSQL, an API) and break the path.

Modes, switched at any time with ``set_mode``:

- ``"pass"``: bytes flow both ways.
- ``"refuse"``: nothing listens on the port (a connect is refused) and every open connection is
  reset, as a server restart does.
- ``"blackhole"``: connections stay open and new ones are accepted, but no byte moves in either
  direction; what was sent meanwhile is delivered once the mode is ``"pass"`` again, as TCP
  retransmission does after a network partition heals. ``cut()`` resets the held connections.

``TcpProxy`` runs on the caller's asyncio loop (``async with TcpProxy(host, port) as proxy``);
``ThreadedTcpProxy`` runs one on its own loop thread for synchronous callers and for tests whose
loop is busy or whose clients live in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

__all__ = ["Mode", "ProxyStats", "TcpProxy", "ThreadedTcpProxy"]

Mode = Literal["pass", "refuse", "blackhole"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "blackhole")
_CHUNK = 64 * 1024
T = TypeVar("T")


@dataclass
class ProxyStats:
    """What went through: connections accepted, reset by the proxy, bytes forwarded each way, and
    bytes read but held back now (a black hole's; ``held > 0``: a request has left its client)."""

    accepted: int = 0
    reset: int = 0
    to_server: int = 0
    to_client: int = 0
    held: int = 0


class _Link:
    """One client connection and its server connection; aborting either end ends both."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                _reset(writer)
        for task in self.tasks:
            task.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees a reset rather than an orderly end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Listen on ``listen_host:listen_port`` (0 = pick one, kept across refuse/pass) → ``target``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        mode: Mode = "pass",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; expected one of {', '.join(MODES)}")
        self.target = (target_host, target_port)
        self.host = listen_host
        self.port = listen_port
        self.stats = ProxyStats()
        self._mode: Mode = mode
        self._flowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._started = False

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def url(self, template: str) -> str:
        """``template`` with ``{host}`` and ``{port}`` filled in, e.g. a database URL."""
        return template.format(host=self.host, port=self.port)

    async def start(self) -> None:
        self._started = True
        await self.set_mode(self._mode)

    async def close(self) -> None:
        self._started = False
        await self._stop_listening()
        self.cut()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def set_mode(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; expected one of {', '.join(MODES)}")
        self._mode = mode
        if not self._started:
            return
        if mode == "refuse":
            await self._stop_listening()
            self.cut()
            return
        if mode == "pass":
            self._flowing.set()
        else:
            self._flowing.clear()
        await self._listen()

    def cut(self) -> int:
        """Reset every open connection now; returns how many."""
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.clear()
        self.stats.reset += len(links)
        return len(links)

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()
            if link not in self._links:  # reset while it waited (refuse or cut)
                return
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.CancelledError):
            self._links.discard(link)
            _reset(writer)
            return
        link.server = server_writer
        up = asyncio.ensure_future(self._pipe(reader, server_writer, "to_server"))
        down = asyncio.ensure_future(self._pipe(server_reader, writer, "to_client"))
        link.tasks = [up, down]
        await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        link.abort()
        self._links.discard(link)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if not self._flowing.is_set():
                    self.stats.held += len(data)
                    try:
                        await self._flowing.wait()
                    finally:
                        self.stats.held -= len(data)
                writer.write(data)
                await writer.drain()
                setattr(self.stats, counter, getattr(self.stats, counter) + len(data))
        # Half-close: pass the end of stream on, so an orderly close stays orderly.
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class ThreadedTcpProxy:
    """A ``TcpProxy`` on its own daemon loop thread; every method is synchronous and thread-safe."""

    def __init__(self, target_host: str, target_port: int, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._args = (target_host, target_port)
        self._kwargs = kwargs
        self._proxy: TcpProxy | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    @property
    def proxy(self) -> TcpProxy:
        if self._proxy is None:
            raise RuntimeError("ThreadedTcpProxy is not started")
        return self._proxy

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def host(self) -> str:
        return self.proxy.host

    @property
    def mode(self) -> Mode:
        return self.proxy.mode

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def url(self, template: str) -> str:
        return self.proxy.url(template)

    def start(self) -> Self:
        self._thread.start()

        async def make() -> TcpProxy:
            proxy = TcpProxy(*self._args, **self._kwargs)
            await proxy.start()
            return proxy

        self._proxy = self._call(make())
        return self

    def set_mode(self, mode: Mode) -> None:
        self._call(self.proxy.set_mode(mode))

    def cut(self) -> int:
        async def cut() -> int:
            return self.proxy.cut()

        return self._call(cut())

    def close(self) -> None:
        if self._proxy is not None:
            with contextlib.suppress(Exception):
                self._call(self._proxy.close())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
