"""Bearer-token checking (clients really send the kubeconfig token) and API-style 404/405."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from kubernetes import client as sync_client
from kubernetes import config as sync_config
from kubernetes.stream import stream
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.stream import WsApiClient

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import channel, exec_frames

pytestmark = pytest.mark.anyio


async def test_async_client_sends_token_for_http_and_exec() -> None:
    async with FakeKube(require_token=True) as kube:
        kube.create_pod("default", name="p")
        kube.start("default", "p")
        kube.write_xcom("default", "p", "7")
        cfg = client.Configuration()
        await config.load_kube_config_from_dict(kube.kubeconfig, client_configuration=cfg)
        async with client.ApiClient(cfg) as api:
            pods = await client.CoreV1Api(api).list_namespaced_pod("default")
        assert [p.metadata.name for p in pods.items] == ["p"]
        async with WsApiClient(cfg) as ws_api:
            frames = await exec_frames(client.CoreV1Api(ws_api), "p", ["cat", "/airflow/xcom/return.json"])
        assert channel(frames, 1) == b"7"
        async with aiohttp.ClientSession() as session, session.get(f"{kube.url}/api/v1/pods") as resp:
            assert resp.status == 401
            assert (await resp.json())["reason"] == "Unauthorized"


def test_sync_client_sends_token_for_exec() -> None:
    with FakeKube.in_thread(require_token=True) as kube:
        kube.create_pod("default", name="p")
        kube.start("default", "p")
        cfg = sync_client.Configuration()
        sync_config.load_kube_config_from_dict(kube.kubeconfig, client_configuration=cfg)
        with sync_client.ApiClient(cfg) as api:
            v1 = sync_client.CoreV1Api(api)
            out = stream(
                v1.connect_get_namespaced_pod_exec,
                "p",
                "default",
                container="base",
                command=["echo", "ok"],
                stdout=True,
                stderr=True,
                stdin=False,
                tty=False,
            )
        assert out == "ok\n"


async def test_unknown_path_is_status_404(fake_kube: FakeKube, core: Any) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake_kube.url}/apis/apps/v1/deployments") as resp:
            assert resp.status == 404
            body = await resp.json()
        async with session.put(f"{fake_kube.url}/api/v1/namespaces/default/pods/p") as resp:
            assert resp.status == 405
            assert (await resp.json())["reason"] == "MethodNotAllowed"
    assert body["kind"] == "Status"
    assert body["message"] == "the server could not find the requested resource"
    with pytest.raises(ApiException) as info:
        await core.replace_namespaced_pod("p", "default", {"metadata": {"name": "p"}})
    assert info.value.status == 405
    assert json.loads(info.value.body)["code"] == 405
