"""Sessions without per-request environment lookups: proxies still honoured, ~/.netrc no longer read."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from finalizer.kube import cluster_from_kubeconfig
from finalizer.testing import FakeKube
from tests.support.kube import FAST, NS, running_pod

pytestmark = pytest.mark.anyio


class Relay:
    """A TCP relay to the fake standing in for an HTTP proxy: counts the connections it carried.

    aiohttp sends a proxied plain-HTTP request (WebSocket upgrades included) in absolute form to the
    proxy, which the fake's server accepts as it is, so piping the bytes is enough.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.connections = 0
        self.first_lines: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = await reader.readline()
        self.first_lines.append(first)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        up_writer.write(first)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Relay]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self.server.close()


async def test_netrc_is_not_consulted(
    fake: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry for the API host used to become basic auth next to the bearer token: aiohttp
    refused every request. Its credentials never reach the API now, and calls work."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", '{"a": 1}')
    async with cluster_from_kubeconfig(fake.kubeconfig, FAST) as cluster:
        assert (await cluster.pods.read_pod(NS, "p")).name == "p"
        assert (await cluster.exec.read_xcom(NS, "p", max_bytes=1024)).value == {"a": 1}
        assert not cluster.api.rest_client.pool_manager.trust_env


async def test_kubeconfig_proxy_carries_unary_calls(fake: FakeKube) -> None:
    running_pod(fake, "p")
    async with Relay(fake.port).running() as relay:
        kubeconfig = copy.deepcopy(fake.kubeconfig)
        kubeconfig["clusters"][0]["cluster"]["proxy-url"] = relay.url
        async with cluster_from_kubeconfig(kubeconfig, FAST) as cluster:
            assert cluster.configuration.proxy == relay.url
            assert (await cluster.pods.read_pod(NS, "p")).name == "p"
            assert await cluster.pods.log_tail(NS, "p") is not None
    assert relay.connections >= 1
    assert relay.first_lines[0].startswith(f"GET {fake.url}/api/v1/namespaces/{NS}/pods/p ".encode())


async def test_environment_proxies_are_resolved_once_and_still_used(
    fake: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``http_proxy`` for API calls, ``ws_proxy`` for exec (the fake is plain HTTP), as aiohttp chose."""
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", '{"a": 1}')
    async with Relay(fake.port).running() as relay:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", relay.url)
        monkeypatch.setenv("ws_proxy", relay.url)
        async with cluster_from_kubeconfig(fake.kubeconfig, FAST) as cluster:
            assert (await cluster.pods.read_pod(NS, "p")).name == "p"
            assert (await cluster.exec.read_xcom(NS, "p", max_bytes=1024)).value == {"a": 1}
            # Chosen when the clients were built: later environment changes are not seen.
            monkeypatch.delenv("http_proxy")
            monkeypatch.delenv("ws_proxy")
            await cluster.pods.read_pod(NS, "p")
    lines = b"".join(relay.first_lines)
    assert f"GET {fake.url}/api/v1/namespaces/{NS}/pods/p ".encode() in lines
    assert b"/exec?" in lines
    assert relay.connections >= 2


async def test_no_proxy_exempts_the_api_host(fake: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    running_pod(fake, "p")
    async with Relay(fake.port).running() as relay:
        monkeypatch.setenv("http_proxy", relay.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        async with cluster_from_kubeconfig(fake.kubeconfig, FAST) as cluster:
            await cluster.pods.read_pod(NS, "p")
    assert relay.connections == 0
