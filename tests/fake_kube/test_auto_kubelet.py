"""The optional auto-kubelet: API-created pods run unattended, scripted by annotations."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import XCOM_READ, channel, exec_frames

pytestmark = pytest.mark.anyio


def manifest(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "annotations": {f"fake-kube/{k.replace('_', '-')}": v for k, v in annotations.items()},
        },
        "spec": {
            "containers": [
                {"name": "base", "image": "python"},
                {"name": "airflow-xcom-sidecar", "image": "alpine"},
            ]
        },
    }


async def wait_for(core: Any, name: str, predicate: Any, within: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    resp = await core.list_namespaced_pod(
        "default",
        watch=True,
        field_selector=f"metadata.name={name}",
        timeout_seconds=within,
        _preload_content=False,
    )
    async for line in resp.content:
        pod = json.loads(line)["object"]
        if predicate(pod):
            resp.close()
            return pod
        assert time.monotonic() < deadline
    raise AssertionError(f"pod {name} never reached the expected state")


def base_terminated(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return any(s["name"] == "base" and "terminated" in s["state"] for s in statuses)


async def test_pod_runs_writes_xcom_and_exits(fake_kube: FakeKube, core: Any, core_ws: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.05)
    await core.create_namespaced_pod(
        "default", manifest("p", xcom='{"n": 1}', exit_code="0", termination_message="done", logs="a\nb")
    )
    pod = await wait_for(core, "p", base_terminated)
    base = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "base")
    assert base["state"]["terminated"]["exitCode"] == 0
    assert base["state"]["terminated"]["message"] == "done"
    assert pod["status"]["phase"] == "Running"  # sidecar waits for the finalizer
    frames = await exec_frames(core_ws, "p", ["sh", "-c", XCOM_READ])
    assert json.loads(channel(frames, 1)) == {"n": 1}
    log = await core.read_namespaced_pod_log("p", "default", container="base", _preload_content=False)
    assert await log.read() == b"a\nb\n"


async def test_exit_code_annotation(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.01, run_seconds=0.01)
    await core.create_namespaced_pod("default", manifest("p", exit_code="2"))
    pod = await wait_for(core, "p", base_terminated)
    base = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "base")
    assert base["state"]["terminated"]["exitCode"] == 2


async def test_image_pull_and_unschedulable_annotations(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.01)
    await core.create_namespaced_pod("default", manifest("img", image_pull="ErrImagePull"))
    await core.create_namespaced_pod("default", manifest("cpu", unschedulable="0/3 nodes are available"))

    def waiting(pod: dict[str, Any]) -> bool:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        return any(s["state"].get("waiting", {}).get("reason") == "ErrImagePull" for s in statuses)

    def unschedulable(pod: dict[str, Any]) -> bool:
        return any(c.get("reason") == "Unschedulable" for c in pod.get("status", {}).get("conditions") or [])

    assert (await wait_for(core, "img", waiting))["status"]["phase"] == "Pending"
    assert (await wait_for(core, "cpu", unschedulable))["status"]["phase"] == "Pending"


async def test_disabled_by_default(fake_kube: FakeKube, core: Any) -> None:
    await core.create_namespaced_pod("default", manifest("p"))
    pod = fake_kube.get_pod("default", "p")
    assert pod is not None
    assert "nodeName" not in pod["spec"]


async def test_helper_created_pods_are_not_driven(fake_kube: FakeKube) -> None:
    fake_kube.auto_kubelet(start_delay=0.0)
    fake_kube.create_pod("default", name="p")
    pod = fake_kube.get_pod("default", "p")
    assert pod is not None
    assert pod["status"]["phase"] == "Pending"


async def test_deleted_pod_is_left_alone(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.auto_kubelet(start_delay=0.05)
    await core.create_namespaced_pod("default", manifest("p"))
    await core.delete_namespaced_pod("p", "default")
    await core.create_namespaced_pod("default", manifest("p", exit_code="5", run_seconds="0"))
    pod = await wait_for(core, "p", base_terminated)
    base = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "base")
    assert base["state"]["terminated"]["exitCode"] == 5
