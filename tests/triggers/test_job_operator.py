"""FinalizingKubernetesJobOperator: defers to FinalizingJobTrigger with the operator's settings and the
Job's uid (kept from the API's answer), honours the rollback switch, and ends a finalized task from
the marker event while classic events go to the provider's execute_complete.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.providers.cncf.kubernetes.triggers.job import KubernetesJobTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
from kubernetes.client import models as k8s

from finalizer.jobs import ClusterRef, CredentialsRef
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.token_issuer import PROVIDER
from tests.triggers.test_job_trigger import TI
from triggers.cluster_hook import CredentialsKubernetesHook
from triggers.events import MARKER_KEY
from triggers.job import FinalizingJobTrigger
from triggers.job_operator import FinalizingKubernetesJobOperator, JobFinalizationMixin
from triggers.policy import FinalizationPolicy

SWITCH = "AIRFLOW__KPO_FINALIZER__ENABLED"


def make_operator(config_file: Path | None = None, **kwargs: Any) -> FinalizingKubernetesJobOperator:
    defaults: dict[str, Any] = {
        "task_id": "job_task",
        "image": "alpine:3",
        "name": "job-task",
        "namespace": "jobs",
        "deferrable": True,
        "wait_until_job_complete": True,
        "do_xcom_push": True,
        "kubernetes_conn_id": None,
        "config_file": str(config_file) if config_file is not None else None,
    }
    defaults.update(kwargs)
    return FinalizingKubernetesJobOperator(**defaults)


def deferred(op: KubernetesJobOperator) -> TaskDeferred:
    """What ``execute`` does once the Job is created and its pods found: ``execute_deferrable``."""
    op.job = k8s.V1Job(metadata=k8s.V1ObjectMeta(name="job-task-x", namespace="jobs", uid="job-uid-1"))
    op.pods = [k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=f"job-task-x-{i}", namespace="jobs")) for i in "ab"]
    with pytest.raises(TaskDeferred) as info:
        op.execute_deferrable()
    assert info.value.method_name == "execute_complete"
    return info.value


def test_defers_to_the_finalizing_trigger_with_every_setting(kubeconfig_path: Path) -> None:
    op = make_operator(
        kubeconfig_path,
        on_finish_action="keep_pod",
        on_kill_propagation_policy="Orphan",
        unwrap_single=False,
        termination_grace_period=4,
        get_logs=False,
        job_poll_interval=3,
        delete_job=True,
        delete_job_propagation_policy="Foreground",
        finalization=FinalizationPolicy(log_tail_lines=2),
    )
    trigger = deferred(op).trigger
    assert isinstance(trigger, FinalizingJobTrigger)
    kwargs = trigger.serialize()[1]
    assert kwargs["job_uid"] == "job-uid-1"
    assert kwargs["job_name"] == "job-task-x"
    assert kwargs["pod_names"] == ["job-task-x-a", "job-task-x-b"]
    assert kwargs["poll_interval"] == 3
    assert kwargs["do_xcom_push"] is True
    assert kwargs["get_logs"] is False
    assert kwargs["on_finish_action"] == "keep_pod"
    assert kwargs["on_kill_propagation_policy"] == "Orphan"
    assert kwargs["unwrap_single"] is False
    assert kwargs["delete_job"] is True
    assert kwargs["propagation_policy"] == "Foreground"
    assert kwargs["termination_grace_period"] == 4
    assert kwargs["finalization"] == {"log_tail_lines": 2}
    assert kwargs["config_file"] == str(kubeconfig_path)
    # The file's content: the async hook (and the finalizer) read no kubeconfig file.
    assert kwargs["config_dict"]["clusters"][0]["cluster"]["server"].startswith("http")
    assert kwargs["worker_outcomes"] == {}


def test_email_on_failure_sends_failures_to_the_worker() -> None:
    op = make_operator(email="ops@example.com", email_on_failure=True)
    trigger = deferred(op).trigger
    assert set(trigger.worker_outcomes) == {"failed"}


@pytest.mark.parametrize(
    ("value", "trigger_class"),
    [(None, FinalizingJobTrigger), ("true", FinalizingJobTrigger), ("false", KubernetesJobTrigger)],
)
def test_the_switch_picks_the_trigger(
    value: str | None, trigger_class: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(SWITCH, raising=False)
    else:
        monkeypatch.setenv(SWITCH, value)
    assert type(deferred(make_operator()).trigger) is trigger_class


def test_create_job_keeps_the_api_answer_with_its_uid(fake_kube: FakeKube, kubeconfig_path: Path) -> None:
    op = make_operator(kubeconfig_path)
    request = op.build_job_request_obj()
    assert request.metadata.uid is None  # what upstream's create_job returns
    created = op.create_job(request)
    try:
        assert created.metadata.uid == fake_kube.get_job("jobs", request.metadata.name)["metadata"]["uid"]
    finally:
        fake_kube.delete_job("jobs", request.metadata.name)


class RecordingTI:
    """The task instance ``execute_complete`` pushes to (what the Task SDK gives a worker)."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_execute_complete_ends_a_finalized_task_from_its_marker() -> None:
    op = make_operator()
    ti = RecordingTI()
    base = {"name": "j", "namespace": "jobs", "pod_names": ["j-a"], "pod_namespace": "jobs", "job": None}
    success = base | {
        "status": "success",
        MARKER_KEY: {"outcome": "success", "reason": "ok", "finalized": True},
    }
    assert op.execute_complete({"ti": ti}, success) is None
    fail_fast = base | {
        "status": "error",
        MARKER_KEY: {"outcome": "fail_fast", "reason": "exit 2", "finalized": True},
    }
    with pytest.raises(AirflowFailException, match="exit 2"):
        op.execute_complete({"ti": ti}, fail_fast)
    assert ti.pushed == {}  # the finalizer pushed the XComs already; no pod is looked up


def test_a_classic_event_goes_to_the_provider_s_execute_complete() -> None:
    op = make_operator()
    ti = RecordingTI()
    event = {
        "name": "j",
        "namespace": "jobs",
        "pod_names": [],
        "pod_namespace": "jobs",
        "status": "error",
        "message": "Job failed with error: BackoffLimitExceeded",
        "job": {"metadata": {"name": "j"}},
        "xcom_result": None,
    }
    with pytest.raises(AirflowException, match="BackoffLimitExceeded"):
        op.execute_complete({"ti": ti}, event)
    assert ti.pushed == {"job": {"metadata": {"name": "j"}}}  # upstream's push


def test_the_mixin_works_for_user_subclasses_and_default_args() -> None:
    from airflow.sdk import DAG

    class TeamJobOperator(JobFinalizationMixin, KubernetesJobOperator):  # type: ignore[misc]
        def __init__(self, *, team: str = "data", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.team = team

    with DAG(
        "job_mixin_dag",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        default_args={"finalization": {"log_tail_lines": 9}, "delete_job": True},
    ):
        op = TeamJobOperator(
            task_id="team",
            name="team",
            team="ml",
            image="alpine:3",
            deferrable=True,
            wait_until_job_complete=True,
            kubernetes_conn_id=None,
        )
    assert op.team == "ml"
    assert op.finalization == FinalizationPolicy(log_tail_lines=9)
    trigger = deferred(op).trigger
    assert isinstance(trigger, FinalizingJobTrigger)
    assert trigger.delete_job is True
    assert trigger.finalization == FinalizationPolicy(log_tail_lines=9)


def test_a_mapped_downstream_task_asks_for_the_list_s_length() -> None:
    from airflow.sdk import DAG, task

    with DAG("job_mapped_dag", schedule=None, start_date=datetime.datetime(2026, 1, 1)):
        producer = make_operator(task_id="producer", name="producer")
        lonely = make_operator(task_id="lonely", name="lonely")

        @task
        def consume(x: int) -> int:
            return x

        consume.expand(x=producer.output)

    assert deferred(producer).trigger.xcom_mapped_length is True
    assert deferred(lonely).trigger.xcom_mapped_length is False


class TokenJobOperator(FinalizingKubernetesJobOperator):
    """A subclass that reaches its cluster its own way (as GKE's does), or breaks doing so."""

    broken = False

    def finalizer_cluster(self) -> CredentialsRef:
        if self.broken:
            raise RuntimeError("no cluster URL")
        return CredentialsRef(
            provider=PROVIDER, kwargs={"issuer_url": "http://i", "cluster_url": "https://c"}
        )


def test_a_subclass_s_own_connection_travels_to_the_trigger_and_its_finalizer_job() -> None:
    op = TokenJobOperator(
        task_id="tok", name="tok", image="alpine:3", deferrable=True, wait_until_job_complete=True
    )
    trigger = deferred(op).trigger
    assert isinstance(trigger, FinalizingJobTrigger)
    assert trigger.cluster_credentials == op.finalizer_cluster()
    again = FinalizingJobTrigger(**trigger.serialize()[1])
    assert again.serialize() == trigger.serialize()
    assert isinstance(again.hook, CredentialsKubernetesHook)  # the classic path connects the same way
    again.task_instance = TI()
    spec = again.job_spec(again.finalization.resolve(lambda key: None))
    assert spec.cluster == ClusterRef(credentials=op.finalizer_cluster())  # the provider alone


def test_a_broken_finalizer_cluster_keeps_the_provider_s_trigger() -> None:
    op = TokenJobOperator(
        task_id="bad", name="bad", image="alpine:3", deferrable=True, wait_until_job_complete=True
    )
    op.broken = True
    assert type(deferred(op).trigger) is KubernetesJobTrigger
