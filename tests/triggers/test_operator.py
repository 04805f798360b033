"""FinalizingKubernetesPodOperator defers to FinalizingPodTrigger with the operator's settings."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from kubernetes.client import models as k8s

from finalizer.exceptions import ConfigurationError
from triggers.events import MARKER_KEY
from triggers.operator import FinalizingKubernetesPodOperator
from triggers.pod import FinalizingPodTrigger
from triggers.policy import FinalizationPolicy


def make_operator(**kwargs: Any) -> FinalizingKubernetesPodOperator:
    defaults: dict[str, Any] = {
        "task_id": "pod_task",
        "image": "alpine:3",
        "name": "pod-task",
        "namespace": "jobs",
        "deferrable": True,
        "do_xcom_push": True,
        "kubernetes_conn_id": None,
        "config_file": None,
    }
    defaults.update(kwargs)
    return FinalizingKubernetesPodOperator(**defaults)


def deferred_trigger(op: FinalizingKubernetesPodOperator) -> tuple[FinalizingPodTrigger, TaskDeferred]:
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="pod-task-x", namespace="jobs", uid="uid-123"))
    with pytest.raises(TaskDeferred) as info:
        op.invoke_defer_method()
    trigger = info.value.trigger
    assert isinstance(trigger, FinalizingPodTrigger)
    return trigger, info.value


def test_defers_to_the_finalizing_trigger_with_every_setting() -> None:
    op = make_operator(
        multiple_outputs=True,
        skip_on_exit_code=[42],
        on_finish_action="keep_pod",
        startup_timeout_seconds=33,
        finalization=FinalizationPolicy(fail_fast_exit_codes=(2,)),
    )
    trigger, deferred = deferred_trigger(op)
    assert deferred.method_name == "trigger_reentry"
    kwargs = trigger.serialize()[1]
    assert kwargs["pod_uid"] == "uid-123"
    assert kwargs["pod_name"] == "pod-task-x"
    assert kwargs["pod_namespace"] == "jobs"
    assert kwargs["multiple_outputs"] is True
    assert kwargs["skip_on_exit_code"] == [42]
    assert kwargs["on_finish_action"] == "keep_pod"
    assert kwargs["startup_timeout"] == 33
    assert kwargs["has_callbacks"] is False
    assert kwargs["finalization"] == {"fail_fast_exit_codes": [2]}


def test_callbacks_are_flagged_so_the_trigger_takes_the_classic_path() -> None:
    from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback

    op = make_operator(callbacks=[KubernetesPodOperatorCallback])
    trigger, _ = deferred_trigger(op)
    assert trigger.has_callbacks is True
    _, reason = trigger._classic_reason()
    assert reason is not None
    assert "callbacks" in reason


def test_bad_finalization_fails_at_dag_parse_time() -> None:
    with pytest.raises(ConfigurationError, match="log_tail_lines"):
        make_operator(finalization={"log_tail_lines": -3})


def test_trigger_reentry_with_a_fail_fast_marker_fails_without_retry_and_touches_no_pod() -> None:
    op = make_operator()
    event = {
        "status": "failed",
        "name": "gone-pod",
        "namespace": "jobs",
        "message": "exit 2",
        MARKER_KEY: {"outcome": "fail_fast", "reason": "exit code 2 is deterministic", "finalized": True},
    }
    # The provider's trigger_reentry would call the Kubernetes API (unreachable here) first.
    with pytest.raises(AirflowFailException, match="deterministic"):
        op.trigger_reentry(context={}, event=event)


def test_the_mixin_works_for_user_subclasses_and_default_args() -> None:
    import datetime

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG

    from triggers.operator import FinalizationMixin

    class PlainPodOperator(FinalizationMixin, KubernetesPodOperator):  # type: ignore[misc]
        pass

    class TeamPodOperator(FinalizationMixin, KubernetesPodOperator):  # type: ignore[misc]
        def __init__(self, *, team: str = "data", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.team = team

    common: dict[str, Any] = {"image": "alpine:3", "deferrable": True, "kubernetes_conn_id": None}
    with DAG(
        "mixin_dag",
        schedule=None,
        start_date=datetime.datetime(2026, 1, 1),
        default_args={"finalization": {"log_tail_lines": 9}},
    ):
        plain = PlainPodOperator(task_id="plain", name="plain", **common)
        team = TeamPodOperator(task_id="team", name="team", team="ml", **common)
        explicit = TeamPodOperator(
            task_id="explicit", name="explicit", finalization=FinalizationPolicy(enabled=False), **common
        )
    assert plain.finalization == FinalizationPolicy(log_tail_lines=9)
    assert team.finalization == FinalizationPolicy(log_tail_lines=9)
    assert team.team == "ml"
    assert explicit.finalization == FinalizationPolicy(enabled=False)
    plain.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="plain-x", namespace="default", uid="u-1"))
    with pytest.raises(TaskDeferred) as info:
        plain.invoke_defer_method()
    assert isinstance(info.value.trigger, FinalizingPodTrigger)
    assert info.value.trigger.finalization == FinalizationPolicy(log_tail_lines=9)


def test_a_mapped_downstream_task_asks_for_the_mapped_length() -> None:
    import datetime

    from airflow.sdk import DAG, task

    with DAG("mapped_dag", schedule=None, start_date=datetime.datetime(2026, 1, 1)):
        producer = make_operator(task_id="producer")
        lonely = make_operator(task_id="lonely")

        @task
        def consume(x: int) -> int:
            return x

        consume.expand(x=producer.output)

    trigger, _ = deferred_trigger(producer)
    assert trigger.xcom_mapped_length is True
    trigger, _ = deferred_trigger(lonely)
    assert trigger.xcom_mapped_length is False
