"""``FakeKube.in_thread()``: its own loop in a daemon thread; helpers callable from any thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from finalizer.testing import FakeKube


def test_serves_another_event_loop_and_helpers_from_threads() -> None:
    with FakeKube.in_thread() as kube:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: kube.create_pod("default", name=f"p{i}"), range(40)))

        async def list_names() -> list[str]:
            cfg = client.Configuration()
            await config.load_kube_config_from_dict(kube.kubeconfig, client_configuration=cfg)
            async with client.ApiClient(cfg) as api:
                pods = await client.CoreV1Api(api).list_namespaced_pod("default")
            return sorted(p.metadata.name for p in pods.items)

        names = asyncio.run(list_names())
        assert names == sorted(f"p{i}" for i in range(40))
        assert kube.resource_version == 41


def test_stops_cleanly_and_port_is_closed() -> None:
    with FakeKube.in_thread() as kube:
        url = kube.url
        threads = {t.name for t in threading.enumerate()}
        assert "fake-kube" in threads

    async def probe() -> None:
        async with aiohttp.ClientSession() as session:
            await session.get(url + "/version")

    with pytest.raises(aiohttp.ClientConnectionError):
        asyncio.run(probe())
    assert "fake-kube" not in {t.name for t in threading.enumerate()}


def test_open_watch_ends_on_exit() -> None:
    async def watch(url: str, started: threading.Event) -> bytes:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "/api/v1/namespaces/default/pods", params={"watch": "1"}) as resp,
        ):
            started.set()
            return await resp.content.read()

    started = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        with FakeKube.in_thread() as kube:
            kube.create_pod("default", name="p")
            future = pool.submit(asyncio.run, watch(kube.url, started))
            assert started.wait(5)
        body = future.result(timeout=5)
    assert body.count(b"\n") == 1  # the synthetic ADDED, then a clean end


def test_helpers_need_a_running_server() -> None:
    kube = FakeKube()
    with pytest.raises(RuntimeError, match="not running"):
        kube.create_pod("default", name="p")


def test_kubeconfig_file(tmp_path: object) -> None:
    import pathlib

    from kubernetes import client as sync_client
    from kubernetes import config as sync_config

    with FakeKube.in_thread() as kube:
        path = kube.write_kubeconfig(pathlib.Path(str(tmp_path)) / "kubeconfig")
        kube.create_pod("default", name="p")
        cfg = sync_client.Configuration()
        sync_config.load_kube_config(config_file=str(path), client_configuration=cfg)
        with sync_client.ApiClient(cfg) as api:
            pods = sync_client.CoreV1Api(api).list_namespaced_pod("default")
        assert [p.metadata.name for p in pods.items] == ["p"]
        assert cfg.host == kube.url


def test_fixed_port() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FakeKube.in_thread(port=port) as kube:
        assert kube.url == f"http://127.0.0.1:{port}"
        kube.create_pod("default", name="p")
        assert kube.get_pod("default", "p") is not None


def test_start_failure_surfaces_and_leaves_no_thread() -> None:
    with FakeKube.in_thread() as first:
        busy = first.port
        with pytest.raises(OSError, match="address already in use"), FakeKube.in_thread(port=busy):
            pass
    assert "fake-kube" not in {t.name for t in threading.enumerate()}
