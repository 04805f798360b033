"""The production wiring: the pieces ``default_wiring`` builds from a ``FinalizerConfig``."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from finalizer.bench.finalize import MemoryXComStore
from finalizer.config import FinalizerConfig
from finalizer.jobs import ClusterRef, JobSpec, PodRef, TaskInstanceRef
from finalizer.kube.clients import KubeCluster
from finalizer.kube.config import KubeSettings
from finalizer.testing import FakeKube
from finalizer.wiring import default_wiring


def _spec(kube: FakeKube) -> JobSpec:
    return JobSpec(
        ti=TaskInstanceRef(id="ti", dag_id="d", task_id="t", run_id="r"),
        cluster=ClusterRef(config_dict=kube.kubeconfig),
        pod=PodRef(namespace="ns", name="p", uid="u"),
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("given", "expected"), [(None, 7), (KubeSettings(max_concurrency=3), 3)], ids=["derived", "explicit"]
)
async def test_kube_calls_in_flight_follow_the_job_slots(
    fake_kube: FakeKube, tmp_path: Path, given: KubeSettings | None, expected: int
) -> None:
    """One Kubernetes call at a time per job: as many calls in flight as ``concurrency_per_cluster``
    unless the wiring is given its own ``KubeSettings``."""
    config = FinalizerConfig(state_dir=tmp_path, concurrency_per_cluster=7)
    async with AsyncExitStack() as stack:
        foundation = await default_wiring(MemoryXComStore(), kube_settings=given)(config, stack)
        cluster = await foundation.cluster_for(_spec(fake_kube))
        assert isinstance(cluster, KubeCluster)
        assert cluster.settings.max_concurrency == expected
