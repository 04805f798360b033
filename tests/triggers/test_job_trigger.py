"""FinalizingJobTrigger: KubernetesJobTrigger's kwargs, exact serialize round trips, the classic path
(upstream's own run against the fake's batch/v1 Jobs), on_kill after Airflow's confirmation only,
and the Job-shaped re-entry event.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from airflow.providers.cncf.kubernetes.triggers.job import KubernetesJobTrigger

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import Outcome, OutcomeKind
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.support.polling import eventually
from tests.triggers import e2e
from tests.triggers.test_on_kill import AnsweringTrigger
from triggers.events import MARKER_KEY, plan_job_event, read_marker
from triggers.job import CLASSPATH, FinalizingJobTrigger
from triggers.policy import FinalizationPolicy


class TI:
    id = "0190aaaa-0000-7000-8000-00000000j0b1"
    dag_id = "d"
    task_id = "t"
    run_id = "r"
    map_index = -1
    try_number = 3


def full_kwargs() -> dict[str, Any]:
    return {
        "job_name": "job-train-abc",
        "job_namespace": "jobs",
        "pod_names": ["job-train-abc-x1", "job-train-abc-x2"],
        "pod_namespace": "jobs",
        "base_container_name": "base",
        "kubernetes_conn_id": "k8s",
        "poll_interval": 2.5,
        "cluster_context": "ctx",
        "config_file": "/etc/kube/config",
        "in_cluster": False,
        "get_logs": False,
        "do_xcom_push": True,
        "job_uid": "4c1e-uid",
        "config_dict": {"apiVersion": "v1", "clusters": [{"name": "c", "cluster": {"server": "http://x"}}]},
        "finalization": {"log_tail_lines": 5},
        "unwrap_single": False,
        "xcom_mapped_length": True,
        "delete_job": True,
        "propagation_policy": "Foreground",
        "on_kill_propagation_policy": "Orphan",
        "on_finish_action": "keep_pod",
        "on_kill_action": "keep_pod",
        "termination_grace_period": 7,
        "worker_outcomes": {"failed": "email_on_failure is sent only by a worker"},
        "cluster_credentials": {"provider": "pkg.mod.Provider", "kwargs": {"cluster": "c1"}},
    }


MINIMAL = {
    "job_name": "j",
    "job_namespace": "default",
    "pod_names": ["j-a"],
    "pod_namespace": "default",
    "base_container_name": "base",
}


def test_accepts_every_keyword_of_the_upstream_trigger_with_its_default() -> None:
    upstream = inspect.signature(KubernetesJobTrigger.__init__).parameters
    ours = inspect.signature(FinalizingJobTrigger.__init__).parameters
    assert set(upstream) <= set(ours)
    for name, param in upstream.items():
        assert ours[name].default == param.default, name


@pytest.mark.parametrize("kwargs", [full_kwargs(), MINIMAL], ids=["every-kwarg", "minimal"])
def test_serialize_round_trips_exactly(kwargs: dict[str, Any]) -> None:
    classpath, first = FinalizingJobTrigger(**kwargs).serialize()
    assert classpath == CLASSPATH
    for key, value in kwargs.items():
        assert first[key] == value, key
    assert FinalizingJobTrigger(**first).serialize() == (classpath, first)


def test_round_trip_through_the_task_sdk_serde_and_the_triggerer_decoder() -> None:
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import serialize as serde_serialize
    from airflow.serialization.decoders import smart_decode_trigger_kwargs

    classpath, kwargs = FinalizingJobTrigger(**full_kwargs()).serialize()
    wire = json.dumps(serde_serialize(kwargs))
    decoded = {k: smart_decode_trigger_kwargs(v) for k, v in Trigger._decrypt_kwargs(wire).items()}
    rebuilt = FinalizingJobTrigger(**decoded)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.finalization == FinalizationPolicy(log_tail_lines=5)


def test_the_deprecated_pod_name_becomes_pod_names() -> None:
    kwargs = {**MINIMAL, "pod_names": [], "pod_name": "only"}
    assert FinalizingJobTrigger(**kwargs).serialize()[1]["pod_names"] == ["only"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"propagation_policy": "Later"}, "propagation_policy"),
        ({"on_kill_propagation_policy": "foreground"}, "on_kill_propagation_policy"),
        ({"finalization": {"xcom_max_bytes": 0}}, "xcom_max_bytes"),
    ],
)
def test_bad_values_fail_at_construction_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        FinalizingJobTrigger(**MINIMAL, **kwargs)


def test_job_spec_names_the_job_and_carries_the_settings() -> None:
    kwargs = full_kwargs()
    kwargs.pop("cluster_credentials")
    trigger = FinalizingJobTrigger(**kwargs)
    trigger.task_instance = TI()
    spec = trigger.job_spec(trigger.finalization.resolve(lambda key: None))
    assert spec.key == f"{TI.id}:3:4c1e-uid"
    assert spec.batch_job is not None
    assert (spec.pod.namespace, spec.pod.name, spec.pod.uid) == ("jobs", "job-train-abc", "4c1e-uid")
    assert spec.batch_job.selector == "batch.kubernetes.io/controller-uid=4c1e-uid"
    assert spec.batch_job.unwrap_single is False
    assert spec.batch_job.delete_job is True
    assert spec.batch_job.propagation_policy == "Foreground"
    assert spec.batch_job.on_kill_propagation_policy == "Orphan"
    assert spec.settings.do_xcom_push is True
    assert spec.settings.mapped_length is True
    assert spec.settings.on_finish_action == "keep_pod"
    assert spec.settings.termination_grace_period == 7
    assert spec.settings.log_tail_lines == 5
    assert spec.settings.log_tail_on_success is False  # get_logs=False
    assert spec.cluster.config_dict == kwargs["config_dict"]
    assert spec.cluster.kubernetes_conn_id == "k8s"


@pytest.mark.parametrize(
    ("kind", "to_worker", "action", "status"),
    [
        (OutcomeKind.SUCCESS, False, "success", None),
        (OutcomeKind.FAILED, False, "failed", None),
        (OutcomeKind.SKIPPED, False, "skipped", None),
        (OutcomeKind.FAIL_FAST, False, "reentry", "error"),
        (OutcomeKind.FALLBACK, False, "reentry", "error"),
        (OutcomeKind.SUCCESS, True, "reentry", "success"),
        (OutcomeKind.FAILED, True, "reentry", "error"),
    ],
)
def test_plan_job_event(kind: OutcomeKind, to_worker: bool, action: str, status: str | None) -> None:
    outcome = Outcome(kind=kind, reason="why", exit_code=None)
    plan = plan_job_event(
        outcome, name="j", namespace="ns", pod_names=["j-a"], pod_namespace="ns", to_worker=to_worker
    )
    assert plan.action == action
    if status is None:
        assert plan.payload is None
        return
    assert plan.payload is not None
    # KubernetesJobTrigger's keys, so a classic execute_complete would not trip; plus the marker.
    assert plan.payload["status"] == status
    assert plan.payload["name"] == "j"
    assert plan.payload["pod_names"] == ["j-a"]
    assert plan.payload["message"] == "why"
    assert plan.payload["xcom_result"] is None
    assert read_marker(plan.payload) == {
        "outcome": kind.value,
        "reason": "why",
        "exit_code": None,
        "finalized": True,
    }


# -- against the fake's batch/v1 Jobs -------------------------------------------------------------


async def new_job(
    kube: FakeKube,
    name: str,
    *,
    sidecar: bool = False,
    parallelism: int = 1,
    backoff_limit: int | None = None,
) -> dict[str, Any]:
    manifest = job_manifest(
        name, parallelism=parallelism, backoff_limit=backoff_limit, with_xcom_sidecar=sidecar
    )
    job = kube.create_job(e2e.NAMESPACE, manifest)
    await eventually(lambda: len(kube.job_pods(e2e.NAMESPACE, name)) == parallelism, what="the Job's pods")
    return job


def make_trigger(kube: FakeKube, job: dict[str, Any], config: Path | None = None, **kwargs: Any) -> Any:
    meta = job["metadata"]
    pods = sorted(p["metadata"]["name"] for p in kube.job_pods(e2e.NAMESPACE, meta["name"]))
    trigger = AnsweringJobTrigger(
        job_name=meta["name"],
        job_namespace=e2e.NAMESPACE,
        pod_names=pods,
        pod_namespace=e2e.NAMESPACE,
        base_container_name="base",
        poll_interval=0.2,
        config_dict=kube.kubeconfig,
        config_file=str(config) if config is not None else None,
        job_uid=meta["uid"],
        **kwargs,
    )
    trigger.task_instance = TI()
    return trigger


class AnsweringJobTrigger(FinalizingJobTrigger):
    """The trigger with Airflow's task-state answer fixed, as ``test_on_kill`` fixes it for pods."""

    answer: Any = "deferred"
    asked = 0
    get_task_state = AnsweringTrigger.get_task_state


async def first_event(trigger: FinalizingJobTrigger) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("no event")


def finish_pods(kube: FakeKube, name: str, exit_code: int = 0) -> None:
    for pod in kube.job_pods(e2e.NAMESPACE, name):
        kube.start(e2e.NAMESPACE, pod["metadata"]["name"])
        kube.terminate(e2e.NAMESPACE, pod["metadata"]["name"], exit_code=exit_code)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "uid", "why"),
    [
        ({"finalization": {"enabled": False}}, True, "disabled by the policy"),
        ({}, False, "without the Job uid"),
    ],
)
async def test_classic_reasons_run_the_upstream_trigger(
    fake_kube: FakeKube, capsys: pytest.CaptureFixture[str], kwargs: dict[str, Any], uid: bool, why: str
) -> None:
    job = await new_job(fake_kube, f"classic-{len(why)}")
    name = job["metadata"]["name"]
    finish_pods(fake_kube, name)
    trigger = make_trigger(fake_kube, job, **kwargs)
    if not uid:
        trigger.job_uid = None
    event = await first_event(trigger)
    # Upstream's own event (the async hook reached the fake through config_dict).
    assert event.payload["status"] == "success"
    assert event.payload["name"] == name
    assert event.payload["job"]["status"]["succeeded"] == 1
    assert MARKER_KEY not in event.payload
    assert why in capsys.readouterr().out
    fake_kube.delete_job(e2e.NAMESPACE, name)


@pytest.mark.anyio
async def test_an_unreachable_ledger_hands_over_and_falls_back_to_the_classic_event(
    fake_kube: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_DEADLINE", "1")
    job = await new_job(fake_kube, "no-ledger", backoff_limit=0)
    finish_pods(fake_kube, "no-ledger", exit_code=3)
    event = await first_event(make_trigger(fake_kube, job))
    assert event.payload["status"] == "error"
    assert event.payload["message"] == "Job failed with error: BackoffLimitExceeded"
    assert MARKER_KEY not in event.payload
    assert "could not finish Job jobs/no-ledger" in capsys.readouterr().out
    fake_kube.delete_job(e2e.NAMESPACE, "no-ledger")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "kwargs", "job_deleted", "pods_deleted"),
    [
        ("deferred", {}, False, False),  # triggerer restart / reassignment: keep everything
        (RuntimeError("supervisor gone"), {}, False, False),  # unknown: keep it, to be safe
        ("failed", {"on_kill_propagation_policy": "Orphan"}, True, True),  # pods deleted by us
        ("success", {"on_kill_propagation_policy": "Orphan", "on_kill_action": "keep_pod"}, True, False),
        ("scheduled", {}, True, True),  # cleared; Foreground: the Job goes with its pods
    ],
)
async def test_on_kill_deletes_only_after_airflow_confirms(
    fake_kube: FakeKube,
    kubeconfig_path: Path,
    answer: Any,
    kwargs: dict[str, Any],
    job_deleted: bool,
    pods_deleted: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"kill-{len(kwargs)}-{type(answer).__name__.lower()[:3]}-{str(answer)[:3]}"
    job = await new_job(fake_kube, name, sidecar=True, parallelism=2)
    pods = [p["metadata"]["name"] for p in fake_kube.job_pods(e2e.NAMESPACE, name)]
    for pod in pods:
        fake_kube.start(e2e.NAMESPACE, pod)
    trigger = make_trigger(fake_kube, job, config=kubeconfig_path, **kwargs)
    trigger.answer = answer
    await trigger.on_kill()
    assert trigger.asked == 1
    if job_deleted:
        await eventually(lambda: fake_kube.get_job(e2e.NAMESPACE, name) is None, what="the Job deleted")
        # No finalizer runs here: the provider's client, with the Job's uid as precondition.
        policy = kwargs.get("on_kill_propagation_policy", "Foreground")
        how = f"(uid {job['metadata']['uid']}, propagationPolicy {policy}, by the provider's client)"
        assert how in capsys.readouterr().out
    else:
        assert fake_kube.get_job(e2e.NAMESPACE, name) is not None
    for pod in pods:
        present = fake_kube.get_pod(e2e.NAMESPACE, pod)
        if pods_deleted:
            assert present is None or present["metadata"].get("deletionTimestamp"), pod
        else:
            assert present is not None, pod
            assert not present["metadata"].get("deletionTimestamp"), pod
    if not job_deleted:
        fake_kube.delete_job(e2e.NAMESPACE, name)
    for pod in pods:
        fake_kube.force_delete(e2e.NAMESPACE, pod)


@pytest.mark.anyio
async def test_on_kill_without_a_finalizer_deletes_a_pod_only_by_its_listed_uid(
    fake_kube: FakeKube, kubeconfig_path: Path
) -> None:
    """A pod that took a listed member's name (and labels) before its DELETE arrived is not deleted."""
    job = await new_job(fake_kube, "kill-uid")
    (listed,) = fake_kube.job_pods(e2e.NAMESPACE, "kill-uid")
    name = listed["metadata"]["name"]
    fake_kube.faults.add("DELETE", rf"/pods/{name}$", status=None, latency=1.0)
    trigger = make_trigger(fake_kube, job, config=kubeconfig_path, on_kill_propagation_policy="Orphan")
    trigger.answer = "failed"
    kill = asyncio.ensure_future(trigger.on_kill())

    def listed_by_label() -> bool:
        return any(
            r.verb == "list" and r.resource == "pods" and job["metadata"]["uid"] in unquote(r.query)
            for r in fake_kube.requests
        )

    await eventually(listed_by_label, what="the pods listed by controller-uid")
    fake_kube.force_delete(e2e.NAMESPACE, name)
    meta = {"name": name, "labels": listed["metadata"]["labels"]}
    newcomer = fake_kube.create_pod(e2e.NAMESPACE, {"metadata": meta, "spec": listed["spec"]})
    with anyio.fail_after(30):
        await kill
    deletes = [r for r in fake_kube.requests if r.verb == "delete" and r.name == name]
    assert [r.status for r in deletes] == [409], "the DELETE named the listed pod's uid"
    kept = fake_kube.get_pod(e2e.NAMESPACE, name)
    assert kept is not None
    assert kept["metadata"]["uid"] == newcomer["metadata"]["uid"]
    assert not kept["metadata"].get("deletionTimestamp")
    fake_kube.force_delete(e2e.NAMESPACE, name)


@pytest.mark.anyio
async def test_on_kill_after_the_event_and_cleanup_delete_nothing(fake_kube: FakeKube) -> None:
    job = await new_job(fake_kube, "no-kill")
    trigger = make_trigger(fake_kube, job)
    trigger.answer = "failed"
    await trigger.cleanup()
    trigger._fired_event = True
    await trigger.on_kill()
    assert trigger.asked == 0
    assert fake_kube.get_job(e2e.NAMESPACE, "no-kill") is not None
    fake_kube.delete_job(e2e.NAMESPACE, "no-kill")


@pytest.mark.anyio
async def test_a_sidecar_stopped_before_the_classic_path_fails_the_task_instead_of_waiting_forever(
    fake_kube: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finalizer that failed mid-way had read this pod and stopped its sidecar: upstream's run
    would wait for that sidecar to run again, forever."""
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_DEADLINE", "1")
    job = await new_job(fake_kube, "stopped-sidecar", sidecar=True)
    (pod,) = (p["metadata"]["name"] for p in fake_kube.job_pods(e2e.NAMESPACE, "stopped-sidecar"))
    fake_kube.start(e2e.NAMESPACE, pod)
    fake_kube.terminate(e2e.NAMESPACE, pod)
    fake_kube.terminate(e2e.NAMESPACE, pod, container="airflow-xcom-sidecar")
    with anyio.fail_after(30):
        event = await first_event(make_trigger(fake_kube, job, do_xcom_push=True))
    assert event.payload["status"] == "error"
    assert f"the XCom sidecar of pod {pod} was stopped" in event.payload["message"]
    assert event.payload["pod_names"] == [pod]
    assert MARKER_KEY not in event.payload  # the worker's execute_complete raises it: retries apply
    assert "handing the task to the worker" in capsys.readouterr().out
    fake_kube.delete_job(e2e.NAMESPACE, "stopped-sidecar")
