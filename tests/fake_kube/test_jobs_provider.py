"""The provider's own Job code (cncf-kubernetes hooks and ``KubernetesJobTrigger``) against the fake.

What it calls is served as is: the async hook's ``wait_until_job_complete`` polls
``read_namespaced_job_status`` (BatchV1Api of kubernetes_asyncio) and reads the conditions; the
trigger reads each pod (``read_namespaced_pod``), waits for its base container to end and its
sidecar to run, and reads the XCom with the sync ``PodManager.extract_xcom`` (exec, then the
sidecar's SIGINT) in a thread; the sync hook creates and reads Jobs with the sync client. This is
the classic path a finalizing Job trigger would replace, so it must run unmodified here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client

from finalizer.testing import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.fake_kube.job_helpers import base_done, watch_pods
from tests.support.optional import require
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

UID_LABEL = "batch.kubernetes.io/controller-uid"


@pytest.fixture
def kubeconfig_file(fake_kube: FakeKube, tmp_path: Path) -> Path:
    return fake_kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kube_connection(kubeconfig_file: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``kubernetes`` connection naming the fake's kubeconfig, from the environment.

    ``KubernetesJobTrigger`` passes ``config_file`` to ``AsyncKubernetesHook``, which ignores it
    (only the connection's ``kube_config_path`` or a ``config_dict`` reach its loader); the
    connection is how a deployment points the trigger at a cluster.
    """
    extra = {"kube_config_path": str(kubeconfig_file)}
    monkeypatch.setenv("AIRFLOW_CONN_FAKE_KUBE", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    return "fake_kube"


@pytest.fixture
async def batch(k8s_config: Any) -> AsyncIterator[Any]:
    async with client.ApiClient(k8s_config) as api:
        yield client.BatchV1Api(api)


def _async_hook(fake_kube: FakeKube) -> Any:
    hooks = require("airflow.providers.cncf.kubernetes.hooks.kubernetes")
    return hooks.AsyncKubernetesHook(config_dict=fake_kube.kubeconfig)


@pytest.mark.parametrize(("exit_code", "failed"), [(0, False), (1, "BackoffLimitExceeded")])
async def test_async_hook_waits_until_job_complete(fake_kube: FakeKube, exit_code: int, failed: Any) -> None:
    hook = _async_hook(fake_kube)
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.1)
    manifest = job_manifest(
        "waited",
        backoff_limit=0,
        with_xcom_sidecar=False,
        annotations={"fake-kube/exit-code": str(exit_code)},
    )
    fake_kube.create_job("default", manifest)
    with anyio.fail_after(30):
        job = await hook.wait_until_job_complete(name="waited", namespace="default", poll_interval=0.05)
    assert hook.is_job_complete(job=job)
    assert hook.is_job_failed(job=job) == failed
    assert bool(hook.is_job_successful(job=job)) is (not failed)
    assert fake_kube.request_counts()[("get", "jobs")] >= 2  # it polled while the Job ran


async def _pods_ready_for_the_trigger(
    fake_kube: FakeKube, core: Any, job: dict[str, Any], count: int
) -> list[str]:
    """Pods the trigger is handed (as the operator's ``get_pods`` lists them), each with its own XCom,
    base container ended, sidecar running: the trigger's container waits then take one look each."""
    pods = await watch_pods(core, f"{UID_LABEL}={job['metadata']['uid']}", lambda pods: len(pods) == count)
    names = sorted(pods)
    for index, name in enumerate(names):
        fake_kube.start("default", name)
        fake_kube.write_xcom("default", name, json.dumps({"pod": index}))
        fake_kube.terminate("default", name, "base", exit_code=0)
    await watch_pods(
        core, f"{UID_LABEL}={job['metadata']['uid']}", lambda pods: all(base_done(p) for p in pods.values())
    )
    return names


@pytest.mark.parametrize(("parallelism", "completions"), [(1, None), (3, None), (3, 3)])
async def test_kubernetes_job_trigger_reads_every_pod_and_the_job(
    fake_kube: FakeKube, core: Any, kube_connection: str, parallelism: int, completions: int | None
) -> None:
    trigger_module = require("airflow.providers.cncf.kubernetes.triggers.job")
    job = fake_kube.create_job(
        "default", job_manifest("classic-job", parallelism=parallelism, completions=completions)
    )
    names = await _pods_ready_for_the_trigger(fake_kube, core, job, parallelism)
    trigger = trigger_module.KubernetesJobTrigger(
        job_name="classic-job",
        job_namespace="default",
        pod_names=names,
        pod_namespace="default",
        base_container_name="base",
        kubernetes_conn_id=kube_connection,
        poll_interval=0.05,
        get_logs=False,
        do_xcom_push=True,
    )
    events = trigger.run()
    with anyio.fail_after(60):
        event = await events.__anext__()
    await events.aclose()
    payload = event.payload
    assert payload["status"] == "success", payload["message"]
    assert payload["message"] == "Job completed successfully"
    assert payload["pod_names"] == names
    assert [json.loads(x) for x in payload["xcom_result"]] == [{"pod": i} for i in range(parallelism)]
    done = [c for c in payload["job"]["status"]["conditions"] if c["status"] == "True"]
    assert [c["type"] for c in done] == ["SuccessCriteriaMet", "Complete"]
    assert payload["job"]["status"]["succeeded"] == parallelism
    # extract_xcom stopped each sidecar: every pod ended Succeeded
    assert {p["status"]["phase"] for p in fake_kube.job_pods("default", "classic-job")} == {"Succeeded"}
    stops = [c for c in fake_kube.exec_commands() if "kill" in c.text]
    assert len(stops) == parallelism


async def test_kubernetes_job_trigger_reports_a_failed_job(fake_kube: FakeKube, kube_connection: str) -> None:
    trigger_module = require("airflow.providers.cncf.kubernetes.triggers.job")
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.02)
    manifest = job_manifest(
        "doomed", backoff_limit=1, with_xcom_sidecar=False, annotations={"fake-kube/exit-code": "2"}
    )
    fake_kube.create_job("default", manifest)
    trigger = trigger_module.KubernetesJobTrigger(
        job_name="doomed",
        job_namespace="default",
        pod_names=[],
        pod_namespace="default",
        base_container_name="base",
        kubernetes_conn_id=kube_connection,
        poll_interval=0.05,
        do_xcom_push=False,
    )
    events = trigger.run()
    with anyio.fail_after(30):
        event = await events.__anext__()
    await events.aclose()
    assert event.payload["status"] == "error"
    assert event.payload["message"] == "Job failed with error: BackoffLimitExceeded"
    assert event.payload["job"]["status"]["failed"] == 2


async def test_sync_hook_creates_reads_lists_and_waits(fake_kube: FakeKube, kubeconfig_file: Path) -> None:
    hooks = require("airflow.providers.cncf.kubernetes.hooks.kubernetes")
    from kubernetes.client import ApiClient as SyncApiClient
    from kubernetes.client import V1Job

    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.05)
    hook = hooks.KubernetesHook(config_file=str(kubeconfig_file))
    manifest = job_manifest("synced", parallelism=2, completions=2, with_xcom_sidecar=False)
    manifest["metadata"]["namespace"] = "default"
    model = SyncApiClient()._ApiClient__deserialize(manifest, V1Job)

    def work() -> tuple[Any, Any, Any]:
        created = hook.create_job(job=model)
        listed = hook.list_jobs_from_namespace(namespace="default")
        done = hook.wait_until_job_complete(job_name="synced", namespace="default", job_poll_interval=0.05)
        return created, listed, done

    with anyio.fail_after(30):
        created, listed, done = await anyio.to_thread.run_sync(work)
    assert created.metadata.uid
    assert [j.metadata.name for j in listed.items] == ["synced"]
    assert hook.is_job_successful(job=done)
    assert done.status.succeeded == 2
    assert done.status.completion_time is not None


async def test_upstream_trigger_reads_only_the_pods_it_was_given(
    fake_kube: FakeKube, core: Any, batch: Any, kube_connection: str
) -> None:
    """Issue 16's gap, shown: a retry pod created after the trigger started is never read, and its
    running sidecar holds the Job back until someone stops it; the event carries the failed pod's XCom."""
    trigger_module = require("airflow.providers.cncf.kubernetes.triggers.job")
    job = fake_kube.create_job("default", job_manifest("retried", backoff_limit=1))
    selector = f"{UID_LABEL}={job['metadata']['uid']}"
    [first] = await watch_pods(core, selector, lambda pods: len(pods) == 1)
    fake_kube.start("default", first)
    fake_kube.write_xcom("default", first, '"from the failed pod"')
    fake_kube.terminate("default", first, "base", exit_code=1)
    trigger = trigger_module.KubernetesJobTrigger(
        job_name="retried",
        job_namespace="default",
        pod_names=[first],
        pod_namespace="default",
        base_container_name="base",
        kubernetes_conn_id=kube_connection,
        poll_interval=0.05,
        get_logs=False,
        do_xcom_push=True,
    )
    events = trigger.run()
    pending = anyio.Event()
    result: dict[str, Any] = {}

    async def run_trigger() -> None:
        result["event"] = await events.__anext__()
        pending.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run_trigger)
        # Reading the failed pod's XCom stopped its sidecar: the pod failed, the controller retried.
        pods = await watch_pods(core, selector, lambda pods: len(pods) == 2)
        [retry] = [name for name in pods if name != first]
        fake_kube.start("default", retry)
        fake_kube.write_xcom("default", retry, '"from the retry"')
        fake_kube.terminate("default", retry, "base", exit_code=0)
        await watch_pods(core, selector, lambda pods: retry in pods and base_done(pods[retry]))
        current = fake_kube.get_job("default", "retried")
        assert current is not None
        assert current["status"]["failed"] == 1
        assert "conditions" not in current["status"]  # the retry's sidecar still runs: no end
        assert not pending.is_set()
        fake_kube.terminate("default", retry, "airflow-xcom-sidecar", exit_code=0)
        with anyio.fail_after(30):
            await pending.wait()
    await events.aclose()
    payload = result["event"].payload
    assert payload["status"] == "success"
    assert payload["xcom_result"] == ['"from the failed pod"']
    assert [c.name for c in fake_kube.exec_commands() if c.name == retry] == []


async def test_on_kill_style_delete_through_the_sync_client(
    fake_kube: FakeKube, kubeconfig_file: Path
) -> None:
    """What ``KubernetesJobOperator.on_kill`` sends: Foreground, with the pod grace period."""
    hooks = require("airflow.providers.cncf.kubernetes.hooks.kubernetes")
    fake_kube.deletion_delay = 0.2
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=60)
    fake_kube.create_job("default", job_manifest("killed", parallelism=2))
    hook = hooks.KubernetesHook(config_file=str(kubeconfig_file))
    await eventually(lambda: len(fake_kube.job_pods("default", "killed")) == 2, what="the Job's pods")

    def kill() -> Any:
        return hook.batch_v1_client.delete_namespaced_job(
            name="killed", namespace="default", propagation_policy="Foreground", grace_period_seconds=5
        )

    with anyio.fail_after(30):
        await anyio.to_thread.run_sync(kill)
    [request] = [r for r in fake_kube.requests if r.verb == "delete" and r.resource == "jobs"]
    assert "propagationPolicy=Foreground" in request.query
    assert request.status == 200
    await eventually(lambda: fake_kube.get_job("default", "killed") is None, what="job gone after its pods")
    assert fake_kube.list_pods("default") == []
