"""Pod operations against the fake API server: read, delete with uid, label, termination, logs."""

from __future__ import annotations

import pytest

from finalizer.exceptions import KubeRequestError, PodConflictError, PodNotFoundError
from finalizer.jobs import PodRef
from finalizer.kube import ALREADY_CHECKED_LABEL, KubeCluster, termination_message
from finalizer.pod import PodView
from finalizer.testing import FakeKube
from tests.support.kube import NS, running_pod

pytestmark = pytest.mark.anyio


async def test_read_pod_is_raw_json(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    pod = await cluster.pods.read_pod(NS, "p")
    assert isinstance(pod.raw, dict)
    assert pod.uid == uid
    assert pod.phase == "Running"
    assert pod.has_running_sidecar()
    assert "resourceVersion" in pod.raw["metadata"]  # camelCase: never deserialised to V1Pod


async def test_read_pod_checks_the_uid(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    assert (await cluster.read_pod(PodRef(namespace=NS, name="p", uid=uid))).uid == uid
    with pytest.raises(PodNotFoundError, match="now has uid"):
        await cluster.read_pod(PodRef(namespace=NS, name="p", uid="another-uid"))


async def test_delete_with_uid_precondition(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    with pytest.raises(PodConflictError, match="Precondition"):
        await cluster.pods.delete_pod(NS, "p", "wrong-uid")
    assert fake.get_pod(NS, "p") is not None
    assert await cluster.pods.delete_pod(NS, "p", uid, grace_period_seconds=0) is True
    assert fake.get_pod(NS, "p") is None
    # Already gone counts as done.
    assert await cluster.pods.delete_pod(NS, "p", uid) is False
    deletes = [r for r in fake.requests if r.verb == "delete"]
    assert [r.status for r in deletes] == [409, 200, 404]


async def test_delete_through_the_cluster_seam(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    ref = PodRef(namespace=NS, name="p", uid=uid)
    assert await cluster.delete_pod(ref, 0) is True
    assert await cluster.delete_pod(ref, 0) is False


async def test_label_checked(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p", labels={"app": "x"})
    await cluster.label_checked(PodRef(namespace=NS, name="p", uid=uid))
    labels = fake.get_pod(NS, "p")["metadata"]["labels"]  # type: ignore[index]
    assert labels == {"app": "x", ALREADY_CHECKED_LABEL: "True"}
    patch = [r for r in fake.requests if r.verb == "patch"]
    assert len(patch) == 1
    assert patch[0].status == 200
    with pytest.raises(PodNotFoundError):
        await cluster.pods.label_checked(NS, "missing", uid)


async def test_label_checked_never_labels_another_pod_under_the_name(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    """The uid in the merge patch guards it: a pod that took the name is not ours to label.

    The API refuses a patch naming another uid (422, the uid is immutable): ``KubeRequestError``.
    """
    running_pod(fake, "p", labels={"app": "x"})
    with pytest.raises(KubeRequestError, match="field is immutable") as info:
        await cluster.label_checked(PodRef(namespace=NS, name="p", uid="uid-of-an-older-pod"))
    assert info.value.status == 422
    assert fake.get_pod(NS, "p")["metadata"]["labels"] == {"app": "x"}  # type: ignore[index]
    assert [r.status for r in fake.requests if r.verb == "patch"] == [422]


async def test_termination_message(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    assert termination_message(await cluster.pods.read_pod(NS, "p")) is None
    fake.terminate(NS, "p", "base", exit_code=3, message="disk full")
    pod = await cluster.pods.read_pod(NS, "p")
    assert termination_message(pod) == "disk full"
    assert pod.container("base").exit_code == 3  # type: ignore[union-attr]
    assert termination_message(PodView({}), "base") is None


async def test_log_tail_is_bounded(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.set_logs(NS, "p", "base", [f"line {i}" for i in range(100)])
    tail = await cluster.pods.log_tail(NS, "p", "base", tail_lines=3, limit_bytes=10_000)
    assert tail.splitlines() == ["line 97", "line 98", "line 99"]
    capped = await cluster.pods.log_tail(NS, "p", "base", tail_lines=50, limit_bytes=12)
    assert len(capped.encode()) <= 12
    log = [r for r in fake.requests if r.verb == "log"][-1]
    assert "tailLines=50" in log.query
    assert "limitBytes=12" in log.query
    assert await cluster.pods.log_tail(NS, "p", tail_lines=0) == ""
    ref = PodRef(namespace=NS, name="p", uid=uid)
    assert await cluster.log_tail(ref, 2, 1000) == "line 98\nline 99\n"
    with pytest.raises(PodNotFoundError):
        await cluster.pods.log_tail(NS, "missing", tail_lines=5)
