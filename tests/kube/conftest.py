"""Fixtures: a fake API server over real sockets, and a KubeCluster pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from finalizer.kube import KubeCluster, cluster_from_kubeconfig
from finalizer.testing import FakeKube
from tests.support.kube import FAST


@pytest.fixture
async def fake() -> AsyncIterator[FakeKube]:
    async with FakeKube(bookmark_interval=0.2) as kube:
        yield kube


@pytest.fixture
async def cluster(fake: FakeKube) -> AsyncIterator[KubeCluster]:
    async with cluster_from_kubeconfig(fake.kubeconfig, FAST) as kube_cluster:
        yield kube_cluster
