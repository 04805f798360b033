"""Fixtures: a fake API server over real sockets, and a KubeCluster pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api_client.backoff import RetryPolicy
from finalizer.kube import KubeCluster, KubeSettings, cluster_from_kubeconfig
from finalizer.testing import FakeKube

NS = "default"

#: Short timeouts and fast retries, so fault tests finish in well under a second each.
FAST = KubeSettings(
    connect_timeout=2.0,
    read_timeout=5.0,
    watch_timeout_seconds=30,
    exec_timeout=5.0,
    watch_retry=RetryPolicy(max_attempts=10**6, base_delay=0.05, max_delay=0.2, deadline=None, jitter=0.0),
    resolve_retry=RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.2, deadline=10.0, jitter=0.0),
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKube]:
    async with FakeKube(bookmark_interval=0.2) as kube:
        yield kube


@pytest.fixture
async def cluster(fake: FakeKube) -> AsyncIterator[KubeCluster]:
    async with cluster_from_kubeconfig(fake.kubeconfig, FAST) as kube_cluster:
        yield kube_cluster


def running_pod(fake: FakeKube, name: str, *, labels: dict[str, str] | None = None, ns: str = NS) -> str:
    """Create and start a pod with the XCom sidecar; returns its uid."""
    fake.create_pod(ns, name=name, labels=labels)
    pod = fake.start(ns, name)
    return str(pod["metadata"]["uid"])
