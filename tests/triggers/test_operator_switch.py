"""``[kpo_finalizer] enabled`` where the task defers: the switch for new tasks (the rollback rule).

The real operator's ``invoke_defer_method``: ``true`` (or unset) defers to ``FinalizingPodTrigger``;
``false`` keeps the provider's own ``KubernetesPodTrigger`` untouched; a value that is not a
boolean is an ERROR in the task's log and the classic trigger (safe: nothing is lost).
"""

from __future__ import annotations

import pytest
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk.exceptions import TaskDeferred
from kubernetes.client import models as k8s

from triggers.operator import FinalizingKubernetesPodOperator
from triggers.pod import FinalizingPodTrigger
from triggers.policy import FinalizationPolicy

SWITCH = "AIRFLOW__KPO_FINALIZER__ENABLED"


def deferred_to(finalization: FinalizationPolicy | None = None) -> object:
    op = FinalizingKubernetesPodOperator(
        task_id="switch",
        image="alpine:3",
        name="switch",
        namespace="jobs",
        deferrable=True,
        kubernetes_conn_id=None,
        config_file=None,
        finalization=finalization,
    )
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="switch-x", namespace="jobs", uid="uid-1"))
    with pytest.raises(TaskDeferred) as info:
        op.invoke_defer_method()
    deferred = info.value
    assert deferred.method_name == "trigger_reentry"
    return deferred.trigger


@pytest.mark.parametrize(
    ("value", "trigger_class"),
    [
        (None, FinalizingPodTrigger),
        ("true", FinalizingPodTrigger),
        ("True", FinalizingPodTrigger),
        ("false", KubernetesPodTrigger),
        ("off", KubernetesPodTrigger),
    ],
)
def test_the_switch_picks_the_trigger(
    value: str | None, trigger_class: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(SWITCH, raising=False)
    else:
        monkeypatch.setenv(SWITCH, value)
    assert type(deferred_to()) is trigger_class


def test_switched_off_wins_over_a_task_s_own_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rollback switch is global: a task that asks for finalization still goes classic."""
    monkeypatch.setenv(SWITCH, "false")
    assert type(deferred_to(FinalizationPolicy(enabled=True))) is KubernetesPodTrigger


def test_a_bad_switch_is_an_error_in_the_task_log_and_the_classic_trigger(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SWITCH, "maybe")
    trigger = deferred_to()
    assert type(trigger) is KubernetesPodTrigger
    # The operator's own logger (Airflow's structlog, the task log in a worker) writes to the console.
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if "'maybe'" in line]
    assert len(lines) == 1, lines
    assert "[error" in lines[0]
    assert "AIRFLOW__KPO_FINALIZER__ENABLED" in lines[0]
    assert "defers to the classic KubernetesPodTrigger" in lines[0]
