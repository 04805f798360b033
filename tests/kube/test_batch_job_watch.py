"""The shared batch/v1 Job watch against the fake API server (its job controller, unmodified client)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from finalizer.batch_job import BatchJobView
from finalizer.exceptions import KubeRequestError
from finalizer.jobs import BatchJobRef
from finalizer.kube import KubeCluster, cluster_from_kubeconfig
from finalizer.testing import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.support.kube import FAST, NS
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


def terminal(job: BatchJobView) -> bool:
    return job.terminal is not None


def create(fake: FakeKube, name: str, **manifest: object) -> BatchJobRef:
    job = fake.create_job(NS, job_manifest(name, **manifest))  # type: ignore[arg-type]
    return BatchJobRef(namespace=NS, name=name, uid=job["metadata"]["uid"])


async def test_complete_and_failed_seen_on_one_watch(fake: FakeKube, cluster: KubeCluster) -> None:
    """Two Jobs, one WATCH connection: one completes, one fails after its backoffLimit retries."""
    fake.auto_kubelet(start_delay=0.01, run_seconds=0.05)
    ok = create(fake, "ok", with_xcom_sidecar=False)
    bad = create(
        fake, "bad", backoff_limit=1, with_xcom_sidecar=False, annotations={"fake-kube/exit-code": "3"}
    )
    async with cluster.watch_batch_job(ok) as w_ok, cluster.watch_batch_job(bad) as w_bad:
        done = await w_ok.wait(terminal, timeout=10)
        failed = await w_bad.wait(terminal, timeout=10)
        assert done is not None
        assert failed is not None
        assert (done.terminal, done.succeeded, done.uid) == ("complete", 1, ok.uid)
        assert (failed.terminal, failed.failure, failed.failed) == ("failed", "BackoffLimitExceeded", 2)
        counts = fake.request_counts()
        assert counts[("watch", "jobs")] == 1
        assert counts[("list", "jobs")] == 1
        assert counts[("get", "jobs")] == 0
        assert list(cluster.job_watcher.stats()) == [NS]
        assert cluster.job_watcher.subscribed == 2
    await eventually(lambda: cluster.job_watcher.stats() == {})


async def test_already_finished_job_is_seen_at_once(fake: FakeKube, cluster: KubeCluster) -> None:
    fake.auto_kubelet(start_delay=0.01, run_seconds=0.02)
    ref = create(fake, "early", with_xcom_sidecar=False)
    await eventually(lambda: "completionTime" in ((fake.get_job(NS, "early") or {}).get("status") or {}))
    async with cluster.watch_batch_job(ref) as sub:
        job = await sub.wait(terminal, timeout=2)
        assert job is not None
        assert job.terminal == "complete"
        assert sub.latest is job


async def test_missing_job_is_gone_after_the_list(fake: FakeKube, cluster: KubeCluster) -> None:
    create(fake, "other")
    async with cluster.watch_batch_job(BatchJobRef(namespace=NS, name="never", uid="u")) as sub:
        assert await sub.wait(terminal, timeout=2) is None
        assert sub.gone_reason == "Job default/never is not in the LIST of Jobs in default"


async def test_deleted_job_is_gone(fake: FakeKube, cluster: KubeCluster) -> None:
    ref = create(fake, "doomed")
    async with cluster.watch_batch_job(ref) as sub:
        assert await sub.wait(lambda j: True, timeout=2) is not None
        fake.delete_job(NS, "doomed", "Background")
        assert await sub.wait(terminal, timeout=5) is None
        assert sub.gone_reason == "Job default/doomed was deleted"
        assert sub.latest is None


async def test_name_taken_by_another_job_is_gone(fake: FakeKube, cluster: KubeCluster) -> None:
    ref = create(fake, "j")
    async with cluster.watch_batch_job(ref) as sub:
        await sub.wait(lambda j: True, timeout=2)
        fake.delete_job(NS, "j", "Orphan")
        await eventually(lambda: fake.get_job(NS, "j") is None)
        create(fake, "j")
        assert await sub.wait(terminal, timeout=5) is None
        assert sub.gone_reason == "Job default/j was deleted"
    async with cluster.watch_batch_job(ref) as late:  # a new watch: its LIST finds another uid
        assert await late.wait(terminal, timeout=2) is None
        assert "now belongs to Job uid" in (late.gone_reason or "")


async def test_late_subscriber_gets_one_get(fake: FakeKube, cluster: KubeCluster) -> None:
    first = create(fake, "first")
    second = create(fake, "second")
    async with cluster.watch_batch_job(first) as sub1:
        await sub1.wait(lambda j: True, timeout=2)
        await eventually(lambda: fake.request_counts()[("watch", "jobs")] == 1)
        fake.clear_requests()
        async with (
            cluster.watch_batch_job(second) as sub2,
            cluster.watch_batch_job(BatchJobRef(namespace=NS, name="ghost", uid="g")) as sub3,
        ):
            job = await sub2.wait(lambda j: True, timeout=2)
            assert job is not None
            assert job.uid == second.uid
            assert await sub3.wait(terminal, timeout=2) is None
            assert sub3.gone_reason == "Job default/ghost not found"
        counts = fake.request_counts()
        assert counts[("get", "jobs")] == 2
        assert counts[("watch", "jobs")] == 0
        assert counts[("list", "jobs")] == 0


async def test_410_expired_relists(fake: FakeKube) -> None:
    settings = dataclasses.replace(FAST, watch_timeout_seconds=1)
    ref = create(fake, "j")
    create(fake, "k")
    async with (
        cluster_from_kubeconfig(fake.kubeconfig, settings) as cluster,
        cluster.watch_batch_job(ref) as sub,
        cluster.watch_batch_job(BatchJobRef(namespace=NS, name="k", uid="keeps-the-watch")),
    ):
        await sub.wait(lambda j: True, timeout=2)
        # Keep the watch down while the Job goes and the history is compacted.
        fake.faults.add("GET", r"/jobs\?.*watch=True", reset=True, times=None)
        await eventually(lambda: any(r.verb == "watch" and r.status == 0 for r in fake.requests), 5)
        fake.delete_job(NS, "j", "Orphan")
        fake.compact()
        fake.faults.clear()
        assert await sub.wait(terminal, timeout=5) is None
        stats = cluster.job_watcher.stats()[NS]
        assert stats.expired >= 1
        assert stats.lists == 2
        assert "not in the LIST" in (sub.gone_reason or "")


async def test_bookmarks_and_retry_after(fake: FakeKube) -> None:
    """A 429 with Retry-After delays the reconnect; bookmarks then move the resourceVersion."""
    ref = create(fake, "j")
    fake.faults.add("GET", r"/jobs\?.*watch=True", status=429, retry_after=1, times=1)
    settings = dataclasses.replace(FAST, watch_timeout_seconds=1)
    async with (
        cluster_from_kubeconfig(fake.kubeconfig, settings) as cluster,
        cluster.watch_batch_job(ref) as sub,
    ):
        await sub.wait(lambda j: True, timeout=2)
        await eventually(lambda: cluster.job_watcher.stats()[NS].bookmarks >= 1, 5)
        stats = cluster.job_watcher.stats()[NS]
        assert stats.errors == 1
        assert "HTTP 429" in (stats.last_error or "")
    attempts = [r for r in fake.requests if r.verb == "watch" and r.resource == "jobs"]
    assert [r.status for r in attempts[:2]] == [429, 200]
    assert attempts[1].time - attempts[0].time >= 0.95


async def test_fifty_jobs_and_their_pods_cost_two_watches(fake: FakeKube, cluster: KubeCluster) -> None:
    """50 Jobs of 2 pods each: one LIST + one WATCH of Jobs, one LIST + one WATCH of pods, no GET."""
    fake.auto_kubelet(start_delay=0.01, run_seconds=1.0)  # they end while watched, not before the LIST
    refs = [create(fake, f"j{i}", parallelism=2, completions=2, with_xcom_sidecar=False) for i in range(50)]
    async with contextlib.AsyncExitStack() as stack:
        watches = [await stack.enter_async_context(cluster.watch_batch_job(ref)) for ref in refs]
        members = [await stack.enter_async_context(cluster.watch_members(ref)) for ref in refs]
        for sub in watches:
            job = await sub.wait(terminal, timeout=30)
            assert job is not None
            assert job.terminal == "complete"
        for ref, member in zip(refs, members, strict=True):
            while not (member.known and len(member.members) == 2):
                await member.changed(10)
            assert {p.uid for p in member.members.values()} == {
                p["metadata"]["uid"] for p in fake.job_pods(NS, ref.name)
            }
        # The ends came over the two watches (not in the first LISTs).
        assert cluster.job_watcher.stats()[NS].events >= 50
        assert cluster.watcher.stats()[NS].events >= 100
        counts = fake.request_counts()
        assert {k: v for k, v in counts.items() if k[0] in ("list", "watch", "get")} == {
            ("list", "jobs"): 1,
            ("watch", "jobs"): 1,
            ("list", "pods"): 1,
            ("watch", "pods"): 1,
        }


async def test_forbidden_job_list_fails_the_subscribers_until_it_recovers(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    """No RBAC for listing Jobs: the waiter hears KubeRequestError (not a hang), then the retry heals."""
    ref = create(fake, "j")
    fake.faults.add("GET", r"/jobs\?(?!.*watch=True)", status=403, times=1)
    async with cluster.watch_batch_job(ref) as sub:
        with pytest.raises(KubeRequestError, match="list Jobs in default failed: HTTP 403"):
            await sub.wait(terminal, timeout=2)
        await eventually(lambda: sub.error is None)
        job = await sub.wait(lambda j: True, timeout=5)
        assert job is not None
        assert job.uid == ref.uid
