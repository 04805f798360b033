"""An evicted pod, through a real `airflow triggerer` (SQLite) and the Eviction API.

A drain or the cluster autoscaler evicts a running pod: the API marks it ``DisruptionTarget``
(EvictionByEvictionAPI) and deletes it gracefully, and its containers run on until the grace
period ends. The task must fail (retries apply) as soon as that shows, saying "evicted" — not
80 seconds later as "exited with code 143" once the containers died.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.anyio]

#: The grace period of the eviction's delete on the fake (seconds): the containers run that long.
GRACE = 40.0


@pytest.fixture
def slow_deletes(fake_kube: FakeKube) -> Iterator[None]:
    before = fake_kube.deletion_delay
    fake_kube.deletion_delay = GRACE
    yield
    fake_kube.deletion_delay = before


def evict(kubeconfig: Path, pod: e2e.PodHandle) -> None:
    """``kubectl drain``'s call: POST pods/{name}/eviction (the official client)."""
    api = config.new_client_from_config(str(kubeconfig))
    try:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace))
        client.CoreV1Api(api).create_namespaced_pod_eviction(pod.name, pod.namespace, body)
    finally:
        api.close()


async def test_an_evicted_pod_fails_its_task_at_once_saying_evicted(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    app: Any,
    fake_kube: FakeKube,
    kubeconfig_path: Path,
    slow_deletes: None,
) -> None:
    pod = e2e.new_pod(fake_kube, "evict-running")
    fake_kube.write_xcom(pod.namespace, pod.name, '{"never": "pushed"}')
    ti = env.create_run(e2e.DAG_ID).ti("evicted")  # retries=0
    deferred = time.time()
    await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig_path, pod, "evicted"))
    wait_for(lambda: e2e.followed_since(fake_kube, pod, deferred), 60, what="the finalizer to watch the pod")
    evicted_at = time.monotonic()
    evict(kubeconfig_path, pod)
    final = wait_for_ti_state(ti, {"success", "failed", "up_for_retry", "scheduled"}, timeout=GRACE)
    took = time.monotonic() - evicted_at
    text = trigger_logs(env, ti)
    assert final.state == "failed", text[-3000:]
    assert "was evicted through the Eviction API" in text
    assert "before its base container ended" in text
    assert "code 143" not in text
    # Handled while the eviction showed, not once the containers died: the pod is still there.
    left = fake_kube.get_pod(pod.namespace, pod.name)
    assert left is not None, f"the task ended only after the grace period ({took:.1f}s)"
    base = next(c for c in left["status"]["containerStatuses"] if c["name"] == "base")
    assert "running" in base["state"]
    assert not e2e.has_xcom(env, ti), "a container that did not end has no XCom to push"
    print(f"[kpo-finalizer e2e] eviction → task failed after {took:.2f}s (grace {GRACE:g}s)")
