"""Lifecycle helpers as a watcher sees them: the shapes triage code reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from finalizer.testing import FakeKube

pytestmark = pytest.mark.anyio

SIDECAR = "airflow-xcom-sidecar"


async def events_since(core: Any, rv: int) -> list[dict[str, Any]]:
    resp = await core.list_namespaced_pod(
        "default", watch=True, resource_version=str(rv), timeout_seconds=0.2, _preload_content=False
    )
    return [json.loads(line) async for line in resp.content]


def status_of(pod: dict[str, Any], container: str) -> dict[str, Any]:
    return next(c for c in pod["status"]["containerStatuses"] if c["name"] == container)


def condition(pod: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in pod["status"].get("conditions", []) if c["type"] == ctype), None)


async def test_default_manifest_looks_like_kpo(fake_kube: FakeKube) -> None:
    pod = fake_kube.create_pod("default", name="p", labels={"dag_id": "d"})
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["base", SIDECAR]
    assert pod["metadata"]["labels"] == {"dag_id": "d"}
    assert pod["status"]["phase"] == "Pending"
    bare = fake_kube.create_pod("default", name="q", with_xcom_sidecar=False, base_container="main")
    assert [c["name"] for c in bare["spec"]["containers"]] == ["main"]


async def test_custom_manifest_and_overrides(fake_kube: FakeKube) -> None:
    manifest = {"metadata": {"name": "orig", "labels": {"a": "1"}}, "spec": {"containers": [{"name": "c"}]}}
    pod = fake_kube.create_pod("ns1", manifest, name="renamed", labels={"b": "2"})
    assert pod["metadata"]["name"] == "renamed"
    assert pod["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert pod["metadata"]["namespace"] == "ns1"
    assert manifest["metadata"]["name"] == "orig"  # caller's dict untouched


async def test_schedule_start_terminate(fake_kube: FakeKube) -> None:
    fake_kube.create_pod("default", name="p")
    scheduled = fake_kube.schedule("default", "p", node="n7")
    assert scheduled["spec"]["nodeName"] == "n7"
    assert condition(scheduled, "PodScheduled")["status"] == "True"
    assert status_of(scheduled, "base")["state"] == {"waiting": {"reason": "ContainerCreating"}}
    running = fake_kube.start("default", "p")
    assert running["status"]["phase"] == "Running"
    assert condition(running, "Ready")["status"] == "True"
    assert "running" in status_of(running, "base")["state"]
    assert status_of(running, "base")["containerID"].startswith("containerd://")
    done = fake_kube.terminate("default", "p", exit_code=3, message='{"why": "bad"}', reason="Error")
    terminated = status_of(done, "base")["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["message"] == '{"why": "bad"}'
    assert terminated["reason"] == "Error"
    assert terminated["finishedAt"]
    assert done["status"]["phase"] == "Running"  # the sidecar still runs
    assert condition(done, "Ready")["status"] == "False"
    final = fake_kube.terminate("default", "p", SIDECAR)
    assert final["status"]["phase"] == "Failed"


async def test_success_phase_without_sidecar(fake_kube: FakeKube) -> None:
    fake_kube.create_pod("default", name="p", with_xcom_sidecar=False)
    fake_kube.start("default", "p")
    pod = fake_kube.terminate("default", "p")
    assert pod["status"]["phase"] == "Succeeded"
    assert status_of(pod, "base")["state"]["terminated"]["reason"] == "Completed"


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "InvalidImageName"])
async def test_image_pull_failure(fake_kube: FakeKube, reason: str) -> None:
    fake_kube.create_pod("default", name="p")
    pod = fake_kube.image_pull_failure("default", "p", reason, message="no such image")
    assert pod["status"]["phase"] == "Pending"
    assert status_of(pod, "base")["state"]["waiting"] == {"reason": reason, "message": "no such image"}


async def test_unschedulable(fake_kube: FakeKube) -> None:
    fake_kube.create_pod("default", name="p")
    pod = fake_kube.unschedulable("default", "p", message="0/1 nodes are available")
    scheduled = condition(pod, "PodScheduled")
    assert scheduled == {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available",
        "lastProbeTime": None,
        "lastTransitionTime": scheduled["lastTransitionTime"],
    }


async def test_eviction_sequence_on_the_watch(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    rv = fake_kube.resource_version
    fake_kube.evict("default", "p")
    events = await events_since(core, rv)
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED", "DELETED"]
    marked, killed, deleted = (e["object"] for e in events)
    assert marked["metadata"]["deletionTimestamp"]
    assert condition(marked, "DisruptionTarget")["status"] == "True"
    assert status_of(killed, "base")["state"]["terminated"]["exitCode"] == 143
    assert status_of(killed, SIDECAR)["state"]["terminated"]["exitCode"] == 137
    assert killed["status"]["phase"] == "Failed"
    assert deleted["metadata"]["uid"] == marked["metadata"]["uid"]
    assert fake_kube.get_pod("default", "p") is None


async def test_force_delete(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="p")
    rv = fake_kube.resource_version
    gone = fake_kube.force_delete("default", "p")
    assert gone is not None
    assert fake_kube.force_delete("default", "p") is None
    events = await events_since(core, rv)
    assert events[-1]["type"] == "DELETED"
    assert events[-1]["object"]["metadata"]["deletionGracePeriodSeconds"] == 0


async def test_helpers_on_missing_pod_raise(fake_kube: FakeKube) -> None:
    with pytest.raises(KeyError, match="does not exist"):
        fake_kube.start("default", "ghost")
    fake_kube.create_pod("default", name="p")
    with pytest.raises(ValueError, match="no container"):
        fake_kube.terminate("default", "p", container="nope")


async def test_resource_versions_strictly_increase(fake_kube: FakeKube) -> None:
    versions = [int(fake_kube.create_pod("default", name="p")["metadata"]["resourceVersion"])]
    versions.append(int(fake_kube.schedule("default", "p")["metadata"]["resourceVersion"]))
    versions.append(int(fake_kube.start("default", "p")["metadata"]["resourceVersion"]))
    versions.append(int(fake_kube.terminate("default", "p")["metadata"]["resourceVersion"]))
    assert versions == sorted(set(versions))
    assert fake_kube.resource_version == versions[-1]


async def test_graceful_api_delete_kills_containers_then_deletes(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    rv = fake_kube.resource_version
    await core.delete_namespaced_pod("p", "default")
    events = await events_since(core, rv)
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert status_of(events[1]["object"], "base")["state"]["terminated"]["exitCode"] == 143


async def test_eviction_without_removal_leaves_dead_pod(fake_kube: FakeKube, core_ws: Any) -> None:
    import aiohttp

    from tests.fake_kube.helpers import exec_handshake

    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    fake_kube.evict("default", "p", remove=False)
    pod = fake_kube.get_pod("default", "p")
    assert pod is not None
    assert pod["metadata"]["deletionTimestamp"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await exec_handshake(core_ws, "p", container=SIDECAR)
    assert info.value.status == 500
    fake_kube.force_delete("default", "p")
    assert fake_kube.get_pod("default", "p") is None
