"""FinalizingPodTrigger.run() in this process: the classic path loses nothing when the finalizer cannot run.

The pod is on the fake cluster; the upstream polling (``KubernetesPodTrigger.run``) does the
rest, so the worker's ``trigger_reentry`` gets the event it knows.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from finalizer.testing.fake_kube import FakeKube
from tests.triggers import e2e
from triggers.events import MARKER_KEY
from triggers.pod import FinalizingPodTrigger


class TI:
    id = "0190aaaa-0000-7000-8000-000000000001"
    dag_id = "d"
    task_id = "t"
    run_id = "r"
    map_index = -1
    try_number = 1


def make_trigger(kube: FakeKube, pod: e2e.PodHandle, **kwargs: Any) -> FinalizingPodTrigger:
    trigger = FinalizingPodTrigger(
        pod_name=pod.name,
        pod_namespace=pod.namespace,
        trigger_start_time=datetime.datetime.now(datetime.UTC),
        base_container_name="base",
        config_dict=kube.kubeconfig,
        poll_interval=0.2,
        pod_uid=pod.uid,
        **kwargs,
    )
    trigger.task_instance = TI()
    return trigger


async def first_event(trigger: FinalizingPodTrigger) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("no event")


@pytest.mark.anyio
async def test_an_unreachable_ledger_falls_back_to_the_classic_event(
    fake_kube: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1: the finalizer's foundation cannot start within its deadline.
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_DEADLINE", "1")
    pod = e2e.new_pod(fake_kube, "no-ledger")
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    event = await first_event(make_trigger(fake_kube, pod))
    assert event.payload["status"] == "success"
    assert event.payload["name"] == pod.name
    assert MARKER_KEY not in event.payload
    assert "handing the task to the worker" in capsys.readouterr().out
    # Nothing was done to the pod: the worker's trigger_reentry reads the XCom and cleans up.
    assert fake_kube.get_pod(pod.namespace, pod.name) is not None
    fake_kube.force_delete(pod.namespace, pod.name)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"has_callbacks": True}, "KPO callbacks"),
        ({"finalization": {"enabled": False}}, "disabled by the policy"),
        ({"pod_uid": None}, "without the pod uid"),
    ],
)
async def test_classic_reasons(
    fake_kube: FakeKube, capsys: pytest.CaptureFixture[str], kwargs: dict[str, Any], why: str
) -> None:
    pod = e2e.new_pod(fake_kube, "classic-reason")
    fake_kube.terminate(pod.namespace, pod.name, exit_code=2)
    trigger = make_trigger(fake_kube, pod, **{k: v for k, v in kwargs.items() if k != "pod_uid"})
    if "pod_uid" in kwargs:
        trigger.pod_uid = kwargs["pod_uid"]
    event = await first_event(trigger)
    assert event.payload["status"] == "failed"
    assert why in capsys.readouterr().out
    assert fake_kube.get_pod(pod.namespace, pod.name) is not None
    fake_kube.force_delete(pod.namespace, pod.name)
