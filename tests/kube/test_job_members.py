"""A Job's pods by owner uid, on the namespace's shared pod watch (the one KPO pods use)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from finalizer.exceptions import KubeRequestError
from finalizer.jobs import BatchJobRef, PodRef
from finalizer.kube import KubeCluster, cluster_from_kubeconfig
from finalizer.kube.stream import unwanted_event
from finalizer.seams import MemberWatch
from finalizer.testing import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.support.kube import FAST, NS, running_pod
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


def create(fake: FakeKube, name: str, **manifest: object) -> BatchJobRef:
    job = fake.create_job(NS, job_manifest(name, **manifest))  # type: ignore[arg-type]
    return BatchJobRef(namespace=NS, name=name, uid=job["metadata"]["uid"])


async def until(members: MemberWatch, holds: Callable[[MemberWatch], bool], within: float = 10) -> None:
    """Level-based: look, then wait for the next change, until ``holds``."""
    async with asyncio.timeout(within):
        while not (members.known and holds(members)):
            await members.changed(None)


async def test_retry_pods_join_and_share_the_kpo_pod_watch(fake: FakeKube, cluster: KubeCluster) -> None:
    """backoffLimit retries are members too; the Job's pods ride on the KPO pod's watch connection."""
    kpo = running_pod(fake, "kpo-pod")
    fake.job_backoff_seconds = 0.0
    fake.auto_kubelet(start_delay=0.01, run_seconds=0.02)
    ref = create(
        fake, "retry", backoff_limit=2, with_xcom_sidecar=False, annotations={"fake-kube/exit-code": "3"}
    )
    seen: set[str] = set()
    async with (
        cluster.watch(PodRef(namespace=NS, name="kpo-pod", uid=kpo)) as kpo_sub,
        cluster.watch_members(ref) as members,
    ):
        await kpo_sub.wait(lambda p: True, timeout=2)

        def three_failed(m: MemberWatch) -> bool:
            seen.update(m.members)
            return len(m.members) == 3 and all(p.phase == "Failed" for p in m.members.values())

        await until(members, three_failed)
        assert seen == set(members.members) == {p["metadata"]["uid"] for p in fake.job_pods(NS, "retry")}
        assert not members.gone
        assert all(p.name.startswith("retry-") for p in members.members.values())
        counts = fake.request_counts()
        assert counts[("watch", "pods")] == 1
        assert counts[("list", "pods")] == 1
        assert list(cluster.watcher.stats()) == [NS]
        assert cluster.watcher.member_sets == 1
        # The members' lines held no subscribed name, yet were parsed: the owner uid kept them.
        assert cluster.watcher.stats()[NS].events_dropped == 0
    await eventually(lambda: cluster.watcher.stats() == {})


async def test_deleted_member_is_gone_and_its_replacement_joins(fake: FakeKube, cluster: KubeCluster) -> None:
    fake.job_backoff_seconds = 0.0
    ref = create(fake, "lost", with_xcom_sidecar=False)
    async with cluster.watch_members(ref) as members:
        await until(members, lambda m: len(m.members) == 1)
        [(first_uid, first)] = members.members.items()
        fake.start(NS, first.name)
        fake.force_delete(NS, first.name)
        await until(members, lambda m: first_uid in m.gone and len(m.members) == 1)
        assert members.gone[first_uid].name == first.name
        assert first_uid not in members.members
        [replacement] = members.members.values()
        assert replacement.uid != first_uid


async def test_member_deleted_while_the_watch_was_down_is_gone_after_the_relist(fake: FakeKube) -> None:
    fake.job_backoff_seconds = 3600.0  # no replacement pod during the test
    ref = create(fake, "j", parallelism=2, completions=2)
    async with (
        cluster_from_kubeconfig(
            fake.kubeconfig, dataclasses.replace(FAST, watch_timeout_seconds=1)
        ) as cluster,
        cluster.watch_members(ref) as members,
    ):
        await until(members, lambda m: len(m.members) == 2)
        doomed, kept = sorted(members.members.values(), key=lambda p: p.name)
        fake.faults.add("GET", r"/pods\?.*watch=True", reset=True, times=None)
        await eventually(lambda: any(r.verb == "watch" and r.status == 0 for r in fake.requests), 5)
        fake.force_delete(NS, doomed.name)
        fake.compact()
        fake.faults.clear()
        await until(members, lambda m: doomed.uid in m.gone)
        assert list(members.members) == [kept.uid]
        stats = cluster.watcher.stats()[NS]
        assert stats.expired >= 1
        assert stats.lists == 2


async def test_late_member_subscriber_lists_by_label(fake: FakeKube, cluster: KubeCluster) -> None:
    kpo = running_pod(fake, "kpo-pod")
    ref = create(fake, "two", parallelism=2, completions=2)
    await eventually(lambda: len(fake.job_pods(NS, "two")) == 2)
    async with cluster.watch(PodRef(namespace=NS, name="kpo-pod", uid=kpo)) as kpo_sub:
        await kpo_sub.wait(lambda p: True, timeout=2)
        await eventually(lambda: fake.request_counts()[("watch", "pods")] == 1)
        fake.clear_requests()
        async with cluster.watch_members(ref) as members:
            await until(members, lambda m: len(m.members) == 2)
            assert members.known
            lists = [r.query for r in fake.requests if r.verb == "list"]
            assert lists == [f"labelSelector=batch.kubernetes.io/controller-uid%3D{ref.uid}&limit=500"]
            # Later changes come on the shared watch, not more LISTs.
            name = next(iter(members.members.values())).name
            fake.start(NS, name)
            await until(members, lambda m: any(p.phase == "Running" for p in m.members.values()))
            counts = fake.request_counts()
            assert (counts[("list", "pods")], counts[("watch", "pods")]) == (1, 0)


async def test_legacy_controller_uid_label_is_accepted(fake: FakeKube, cluster: KubeCluster) -> None:
    fake.create_pod(NS, name="old-style", labels={"controller-uid": "legacy-uid"})
    ref = BatchJobRef(namespace=NS, name="old-job", uid="legacy-uid")
    async with cluster.watch_members(ref) as members:
        await until(members, lambda m: len(m.members) == 1)
        assert [p.name for p in members.members.values()] == ["old-style"]
    running = running_pod(fake, "keeps-the-watch")
    async with cluster.watch(PodRef(namespace=NS, name="keeps-the-watch", uid=running)) as sub:
        await sub.wait(lambda p: True, timeout=2)
        async with cluster.watch_members(ref) as late:  # resolve LIST: new label finds none, legacy one does
            await until(late, lambda m: len(m.members) == 1)
        lists = [r.query for r in fake.requests if r.verb == "list"]
        assert lists[-2:] == [
            "labelSelector=batch.kubernetes.io/controller-uid%3Dlegacy-uid&limit=500",
            "labelSelector=controller-uid%3Dlegacy-uid&limit=500",
        ]


async def test_a_job_without_pods_is_known_and_empty(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "unrelated", labels={"controller-uid": "someone-else"})
    async with cluster.watch_members(BatchJobRef(namespace=NS, name="j", uid="no-pods")) as members:
        await until(members, lambda m: True)
        assert dict(members.members) == {}
        assert dict(members.gone) == {}
        with pytest.raises(TimeoutError):
            await members.changed(0.2)


async def test_a_change_between_looks_is_not_lost(fake: FakeKube, cluster: KubeCluster) -> None:
    ref = create(fake, "j")
    async with cluster.watch_members(ref) as members:
        await until(members, lambda m: len(m.members) == 1)
        [pod] = members.members.values()
        fake.start(NS, pod.name)  # changed while nobody waits
        await eventually(lambda: members.members[pod.uid].phase == "Running")
        await asyncio.wait_for(members.changed(None), 0.5)  # returns at once: the change was counted


async def test_forbidden_list_fails_the_member_watch_until_it_recovers(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    ref = create(fake, "j")
    fake.faults.add("GET", r"/namespaces/default/pods\?(?!.*watch=True)", status=403, times=1)
    async with cluster.watch_members(ref) as members:
        with pytest.raises(KubeRequestError):
            await members.changed(2)
        await eventually(lambda: members.known)  # the watch kept trying: the next LIST cleared it
        await until(members, lambda m: len(m.members) == 1)


def _member_line(labels: str) -> bytes:
    return (
        '{"type":"MODIFIED","object":{"metadata":{"name":"j-abcde","resourceVersion":"7",'
        f'"labels":{{{labels}}},"ownerReferences":[{{"uid":"u-3"}}]}}}}}}\n'
    ).encode()


@pytest.mark.parametrize(
    ("line", "owners", "expected"),
    [
        (_member_line('"batch.kubernetes.io/controller-uid":"u-1"'), {"u-1"}, (False, None)),
        (_member_line('"batch.kubernetes.io\\/controller-uid":"u-1"'), {"u-1"}, (False, None)),
        (_member_line('"controller-uid":"u-1"'), {"u-1"}, (False, None)),  # legacy label only
        (_member_line('"batch.kubernetes.io/controller-uid":"u-2"'), {"u-1"}, (True, "7")),
        (_member_line('"app":"u-1"'), {"u-1"}, (True, "7")),  # the uid elsewhere is not a membership
        (_member_line('"batch.kubernetes.io/controller-uid":"u-1"'), {}, (True, "7")),
    ],
)
def test_prefilter_keeps_a_wanted_owner(
    line: bytes, owners: dict[str, list[object]], expected: tuple[bool, str | None]
) -> None:
    assert unwanted_event(line, {"some-pod": []}, owners) == expected
