"""Restart is not kill: on_kill deletes the pod only when Airflow says the task left DEFERRED.

The pod lives on the fake cluster and the provider's own async hook deletes it. Airflow's answer
(``get_task_state``, a supervisor call inside the triggerer) is given per test; the end-to-end
tests drive the real one.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from finalizer.testing.fake_kube import FakeKube
from tests.triggers import e2e
from triggers.pod import FinalizingPodTrigger


class AnsweringTrigger(FinalizingPodTrigger):
    """The trigger with Airflow's task-state answer fixed (no supervisor in this process)."""

    answer: Any = "deferred"
    asked = 0

    async def get_task_state(self) -> Any:
        self.asked += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def make_trigger(kube: FakeKube, pod: e2e.PodHandle, **kwargs: Any) -> AnsweringTrigger:
    return AnsweringTrigger(
        pod_name=pod.name,
        pod_namespace=pod.namespace,
        trigger_start_time=datetime.datetime.now(datetime.UTC),
        base_container_name="base",
        kubernetes_conn_id=None,
        config_dict=kube.kubeconfig,
        pod_uid=pod.uid,
        **kwargs,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "kwargs", "fired", "deleted", "asked"),
    [
        ("deferred", {}, False, False, 1),  # triggerer restart / reassignment: keep the pod
        (RuntimeError("supervisor gone"), {}, False, False, 1),  # unknown: keep it, to be safe
        ("failed", {}, False, True, 1),  # user marked it failed
        ("success", {}, False, True, 1),
        ("scheduled", {}, False, True, 1),  # cleared
        ("failed", {"on_kill_action": "keep_pod"}, False, False, 0),
        ("failed", {}, True, False, 0),  # the trigger already ended the task
    ],
)
async def test_on_kill(
    fake_kube: FakeKube, answer: Any, kwargs: dict[str, Any], fired: bool, deleted: bool, asked: int
) -> None:
    pod = e2e.new_pod(fake_kube, "on-kill")
    trigger = make_trigger(fake_kube, pod, **kwargs)
    trigger.answer = answer
    trigger._fired_event = fired
    await trigger.on_kill()
    assert trigger.asked == asked
    present = fake_kube.get_pod(pod.namespace, pod.name)
    if deleted:
        assert present is None or present["metadata"].get("deletionTimestamp")
    else:
        assert present is not None
        assert not present["metadata"].get("deletionTimestamp")
        fake_kube.force_delete(pod.namespace, pod.name)


@pytest.mark.anyio
async def test_cleanup_never_deletes_the_pod(fake_kube: FakeKube) -> None:
    pod = e2e.new_pod(fake_kube, "cleanup")
    trigger = make_trigger(fake_kube, pod)
    trigger.answer = "failed"
    await trigger.cleanup()
    assert trigger.asked == 0
    assert fake_kube.get_pod(pod.namespace, pod.name) is not None
    fake_kube.force_delete(pod.namespace, pod.name)
