"""The fake's job controller: pods per parallelism/completions, retries, deadline, conditions, counters."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from finalizer.testing import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.fake_kube.job_helpers import conditions, finished, watch_job, watch_pods

pytestmark = pytest.mark.anyio

UID_LABEL = "batch.kubernetes.io/controller-uid"


@pytest.fixture
async def batch(k8s_config: Any) -> AsyncIterator[Any]:
    async with client.ApiClient(k8s_config) as api:
        yield client.BatchV1Api(api)


def _reason(job: dict[str, Any], type_: str) -> str:
    return next(c["reason"] for c in job["status"]["conditions"] if c["type"] == type_)


async def test_pods_come_from_the_template_owned_and_tracked(fake_kube: FakeKube, core: Any) -> None:
    job = fake_kube.create_job(
        "default",
        job_manifest("tpl", parallelism=2, completions=2, labels={"app": "x"}, annotations={"note": "n"}),
    )
    uid = job["metadata"]["uid"]
    pods = await watch_pods(core, f"{UID_LABEL}={uid}", lambda pods: len(pods) == 2)
    for name, pod in pods.items():
        meta = pod["metadata"]
        assert name.startswith("tpl-")
        assert len(name) == len("tpl-") + 5
        assert meta["labels"]["app"] == "x"
        assert meta["labels"]["batch.kubernetes.io/job-name"] == "tpl"
        assert meta["labels"]["job-name"] == "tpl"
        assert meta["annotations"] == {"note": "n"}
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": "tpl",
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["finalizers"] == ["batch.kubernetes.io/job-tracking"]
        assert [c["name"] for c in pod["spec"]["containers"]] == ["base", "airflow-xcom-sidecar"]
    stored = fake_kube.get_job("default", "tpl")
    assert stored is not None
    assert stored["status"]["active"] == 2
    assert stored["status"]["startTime"]
    assert stored["status"]["ready"] == 0


async def test_completions_beyond_parallelism_run_in_waves(
    fake_kube: FakeKube, batch: Any, core: Any
) -> None:
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.05)
    job = fake_kube.create_job(
        "default", job_manifest("waves", parallelism=2, completions=5, with_xcom_sidecar=False)
    )
    most_active = 0
    created: set[str] = set()

    def done(pods: dict[str, dict[str, Any]]) -> bool:
        nonlocal most_active
        created.update(pods)
        running = [p for p in pods.values() if p["status"].get("phase") not in ("Succeeded", "Failed")]
        most_active = max(most_active, len(running))
        return len(created) == 5 and not running

    await watch_pods(core, f"{UID_LABEL}={job['metadata']['uid']}", done)
    states = await watch_job(batch, "waves", finished)
    final = states[-1]
    assert most_active == 2
    assert conditions(final) == ["SuccessCriteriaMet", "Complete"]
    assert _reason(final, "Complete") == "CompletionsReached"
    assert final["status"]["succeeded"] == 5
    assert "failed" not in final["status"]
    assert "active" not in final["status"]
    assert final["status"]["completionTime"]
    assert final["status"]["uncountedTerminatedPods"] == {}
    assert all("finalizers" not in p["metadata"] for p in fake_kube.job_pods("default", "waves"))


async def test_success_criteria_met_is_its_own_state_before_complete(fake_kube: FakeKube, batch: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.02)
    fake_kube.create_job("default", job_manifest("two-step", with_xcom_sidecar=False))
    states = await watch_job(batch, "two-step", finished)
    seen = [conditions(s) for s in states]
    assert ["SuccessCriteriaMet"] in seen
    assert seen[-1] == ["SuccessCriteriaMet", "Complete"]


async def test_sidecar_keeps_the_pod_and_the_job_running(fake_kube: FakeKube, batch: Any, core: Any) -> None:
    """A KPO pod's xcom sidecar runs until stopped: the Job completes only after it exits."""
    job = fake_kube.create_job("default", job_manifest("side"))
    pods = await watch_pods(core, f"{UID_LABEL}={job['metadata']['uid']}", lambda pods: len(pods) == 1)
    [name] = pods
    fake_kube.start("default", name)
    fake_kube.terminate("default", name, "base", exit_code=0)
    current = fake_kube.get_job("default", "side")
    assert current is not None
    assert conditions(current) == []
    fake_kube.terminate("default", name, "airflow-xcom-sidecar", exit_code=0)
    states = await watch_job(batch, "side", finished)
    assert conditions(states[-1]) == ["SuccessCriteriaMet", "Complete"]


async def test_backoff_limit_exceeded_fails_after_retries(fake_kube: FakeKube, batch: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.02)
    manifest = job_manifest(
        "fails", backoff_limit=2, with_xcom_sidecar=False, annotations={"fake-kube/exit-code": "3"}
    )
    fake_kube.create_job("default", manifest)
    states = await watch_job(batch, "fails", finished)
    final = states[-1]
    assert conditions(final) == ["FailureTarget", "Failed"]
    assert _reason(final, "Failed") == "BackoffLimitExceeded"
    assert final["status"]["failed"] == 3  # the first pod and backoffLimit retries
    assert "completionTime" not in final["status"]
    assert len(fake_kube.job_pods("default", "fails")) == 3
    assert any(conditions(s) == ["FailureTarget"] for s in states)


async def test_replacement_waits_for_the_backoff(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.job_backoff_seconds = 0.5
    job = fake_kube.create_job("default", job_manifest("slow", backoff_limit=1, with_xcom_sidecar=False))
    selector = f"{UID_LABEL}={job['metadata']['uid']}"
    [first] = await watch_pods(core, selector, lambda pods: len(pods) == 1)
    fake_kube.start("default", first)
    failed_at = time.monotonic()
    fake_kube.terminate("default", first, "base", exit_code=1)
    await watch_pods(core, selector, lambda pods: len(pods) == 2)
    assert time.monotonic() - failed_at >= 0.5


async def test_active_deadline_fails_and_deletes_running_pods(fake_kube: FakeKube, batch: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=60)
    fake_kube.deletion_delay = 0.3  # the kubelet takes a while to kill them: the Job waits
    fake_kube.create_job("default", job_manifest("late", parallelism=2, active_deadline_seconds=1))
    states = await watch_job(batch, "late", finished, within=10)
    final = states[-1]
    assert any(conditions(s) == ["FailureTarget"] and s["status"]["terminating"] == 2 for s in states)
    assert conditions(final) == ["FailureTarget", "Failed"]
    assert final["status"]["terminating"] == 0
    assert _reason(final, "Failed") == "DeadlineExceeded"
    assert next(c for c in final["status"]["conditions"] if c["type"] == "Failed")["message"] == (
        "Job was active longer than specified deadline"
    )
    assert final["status"]["failed"] == 2
    assert fake_kube.job_pods("default", "late") == []  # deleted by the controller, gone


async def test_indexed_job_numbers_its_pods(fake_kube: FakeKube, batch: Any, core: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.02)
    job = fake_kube.create_job(
        "default",
        job_manifest("idx", parallelism=3, completions=3, completion_mode="Indexed", with_xcom_sidecar=False),
    )
    pods = await watch_pods(core, f"{UID_LABEL}={job['metadata']['uid']}", lambda pods: len(pods) == 3)
    by_index = {
        int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]): p
        for p in pods.values()
    }
    assert sorted(by_index) == [0, 1, 2]
    for index, pod in by_index.items():
        assert pod["metadata"]["name"].startswith(f"idx-{index}-")
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == str(index)
        assert pod["spec"]["hostname"] == f"idx-{index}"
        assert pod["spec"]["containers"][0]["env"][-1]["name"] == "JOB_COMPLETION_INDEX"
    final = (await watch_job(batch, "idx", finished))[-1]
    assert final["status"]["completedIndexes"] == "0-2"
    assert conditions(final) == ["SuccessCriteriaMet", "Complete"]


async def test_pod_deleted_mid_run_counts_failed_and_is_replaced(fake_kube: FakeKube, core: Any) -> None:
    job = fake_kube.create_job("default", job_manifest("lost", with_xcom_sidecar=False))
    selector = f"{UID_LABEL}={job['metadata']['uid']}"
    [first] = await watch_pods(core, selector, lambda pods: len(pods) == 1)
    fake_kube.start("default", first)
    fake_kube.force_delete("default", first)
    pods = await watch_pods(core, selector, lambda pods: len(pods) == 1 and first not in pods)
    assert first not in pods
    current = fake_kube.get_job("default", "lost")
    assert current is not None
    assert current["status"]["failed"] == 1
    assert conditions(current) == []


async def test_work_queue_completes_once_all_pods_end(fake_kube: FakeKube, batch: Any, core: Any) -> None:
    """completions unset: no new pod after the first success; Complete once every pod ended."""
    job = fake_kube.create_job("default", job_manifest("queue", parallelism=3, with_xcom_sidecar=False))
    pods = await watch_pods(core, f"{UID_LABEL}={job['metadata']['uid']}", lambda pods: len(pods) == 3)
    names = sorted(pods)
    for name in names:
        fake_kube.start("default", name)
    running = (await watch_job(batch, "queue", lambda j: j["status"].get("ready") == 3))[-1]
    assert running["status"]["active"] == 3
    fake_kube.terminate("default", names[0], "base", exit_code=0)
    fake_kube.terminate("default", names[1], "base", exit_code=0)
    current = fake_kube.get_job("default", "queue")
    assert current is not None
    assert conditions(current) == []
    fake_kube.terminate("default", names[2], "base", exit_code=0)
    final = (await watch_job(batch, "queue", finished))[-1]
    assert final["status"]["succeeded"] == 3
    assert len(fake_kube.job_pods("default", "queue")) == 3


async def test_suspended_job_creates_no_pods(fake_kube: FakeKube, batch: Any) -> None:
    manifest = job_manifest("held")
    manifest["spec"]["suspend"] = True
    fake_kube.create_job("default", manifest)
    states = await watch_job(batch, "held", lambda job: "Suspended" in conditions(job))
    assert _reason(states[-1], "Suspended") == "JobSuspended"
    assert "startTime" not in states[-1]["status"]
    assert fake_kube.job_pods("default", "held") == []
