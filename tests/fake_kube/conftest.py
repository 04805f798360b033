"""Helpers for fake_kube tests: an unmodified kubernetes_asyncio client pointed at the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.stream import WsApiClient

from finalizer.testing import FakeKube


@pytest.fixture
async def k8s_config(fake_kube: FakeKube) -> Any:
    cfg = client.Configuration()
    await config.load_kube_config_from_dict(fake_kube.kubeconfig, client_configuration=cfg)
    return cfg


@pytest.fixture
async def core(k8s_config: Any) -> AsyncIterator[Any]:
    """``CoreV1Api`` over plain HTTP."""
    async with client.ApiClient(k8s_config) as api:
        yield client.CoreV1Api(api)


@pytest.fixture
async def core_ws(k8s_config: Any) -> AsyncIterator[Any]:
    """``CoreV1Api`` over the WebSocket client (exec)."""
    async with WsApiClient(k8s_config) as api:
        yield client.CoreV1Api(api)
