"""Log streams against the fake API server: whole and followed, in bounded batches; and the
Eviction subresource the eviction tests drive (its fidelity to kube-apiserver)."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio.client import ApiException, CoreV1Api

from finalizer.decisions.logs import split_stamp
from finalizer.exceptions import KubeRequestError, PodNotFoundError
from finalizer.jobs import PodRef
from finalizer.kube import KubeCluster
from finalizer.kube.logs import BATCH_BYTES
from finalizer.testing import FakeKube
from tests.support.kube import NS, running_pod
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


def log_requests(fake: FakeKube) -> list[str]:
    return [r.query for r in fake.requests if r.verb == "log"]


async def test_whole_log_in_bounded_batches(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    lines = [f"line {i:05d} " + "x" * 90 for i in range(5000)]  # ~500 KiB
    fake.set_logs(NS, "p", "base", lines)
    fake.terminate(NS, "p", exit_code=0)
    batches = [b async for b in cluster.logs.lines(NS, "p", "base", follow=False)]
    assert len(batches) > 10
    assert all(sum(len(x) + 1 for x in b) <= BATCH_BYTES + 200 for b in batches)
    got = [split_stamp(x) for b in batches for x in b]
    assert [m for _, m in got] == lines
    assert all(stamp is not None for stamp, _ in got)  # timestamps=true
    (query,) = log_requests(fake)
    assert "follow=False" in query
    assert "timestamps=True" in query


async def test_follow_streams_lines_while_the_container_runs(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.set_logs(NS, "p", "base", ["one"])
    seen: list[str] = []
    first = asyncio.Event()

    async def read() -> None:
        ref = PodRef(namespace=NS, name="p", uid=uid)
        async for batch in cluster.log_lines(ref, follow=True, since_seconds=None):
            seen.extend(split_stamp(x)[1] for x in batch)
            first.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), 5)
    fake.append_logs(NS, "p", "base", ["two", "three"])
    await eventually(lambda: seen == ["one", "two", "three"], what="appended lines while running")
    assert not reader.done()  # still following: the container runs
    fake.terminate(NS, "p", exit_code=0)
    await asyncio.wait_for(reader, 5)  # the stream ends with the container
    (query,) = log_requests(fake)  # one stream, not a poll
    assert "follow=True" in query


async def test_overlong_line_is_cut(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.set_logs(NS, "p", "base", ["y" * 150_000, "after"])
    fake.terminate(NS, "p", exit_code=0)
    out = [
        x async for b in cluster.logs.lines(NS, "p", "base", follow=False, max_line_bytes=65536) for x in b
    ]
    assert len(out) == 4  # 150,000 bytes (+ the stamp) in pieces of 64 KiB, then the next line
    assert all(len(x.encode()) <= 65536 for x in out)
    assert split_stamp("".join(out[:3]))[1] == "y" * 150_000
    assert split_stamp(out[-1])[1] == "after"


async def test_errors_are_translated(fake: FakeKube, cluster: KubeCluster) -> None:
    with pytest.raises(PodNotFoundError):
        [b async for b in cluster.logs.lines(NS, "nope", "base", follow=False)]
    fake.create_pod(NS, name="waiting")
    with pytest.raises(KubeRequestError, match="waiting to start"):
        [b async for b in cluster.logs.lines(NS, "waiting", "base", follow=True)]


# --- the Eviction subresource ------------------------------------------------------------------


def eviction(name: str, uid: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
    if uid is not None:
        body["deleteOptions"] = {"preconditions": {"uid": uid}}
    return body


async def test_eviction_marks_the_pod_then_deletes_it_gracefully(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    """As kube-apiserver 1.31+: 201 Status, DisruptionTarget at once, containers run through the grace."""
    fake.deletion_delay = 0.5
    running_pod(fake, "p")
    core: CoreV1Api = cluster.core
    answer = await core.create_namespaced_pod_eviction("p", NS, eviction("p"), _preload_content=False)
    assert answer.status == 201
    body = await answer.json()
    assert (body["kind"], body["status"], body["code"]) == ("Status", "Success", 201)
    pod = fake.get_pod(NS, "p")
    assert pod is not None
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (cond["status"], cond["reason"]) == ("True", "EvictionByEvictionAPI")
    assert "deletionTimestamp" in pod["metadata"]
    states = {c["name"]: next(iter(c["state"])) for c in pod["status"]["containerStatuses"]}
    assert set(states.values()) == {"running"}  # the grace period has not run out
    await eventually(lambda: fake.get_pod(NS, "p") is None, what="pod gone after the grace period")


async def test_eviction_errors(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    core: CoreV1Api = cluster.core
    with pytest.raises(ApiException) as missing:
        await core.create_namespaced_pod_eviction("nope", NS, eviction("nope"))
    assert missing.value.status == 404
    with pytest.raises(ApiException) as conflict:
        await core.create_namespaced_pod_eviction("p", NS, eviction("p", uid="another"))
    assert conflict.value.status == 409
    with pytest.raises(ApiException) as mismatch:
        await core.create_namespaced_pod_eviction("p", NS, eviction("q"))
    assert mismatch.value.status == 400
    assert fake.get_pod(NS, "p") is not None


async def test_eviction_body_without_kind_is_the_endpoints_type(fake: FakeKube, cluster: KubeCluster) -> None:
    """Official clients may omit kind/apiVersion (decoded as an Eviction); a wrong kind is refused."""
    running_pod(fake, "p")
    core: CoreV1Api = cluster.core
    with pytest.raises(ApiException) as wrong:
        await core.create_namespaced_pod_eviction("p", NS, {"kind": "Pod", "metadata": {"name": "p"}})
    assert wrong.value.status == 400
    answer = await core.create_namespaced_pod_eviction(
        "p", NS, {"metadata": {"name": "p"}}, _preload_content=False
    )
    assert answer.status == 201


async def test_log_streams_are_bounded_per_cluster(fake: FakeKube) -> None:
    """``max_log_streams``: a stream beyond the bound waits for one to end (the pool stays free)."""
    from dataclasses import replace

    from finalizer.kube import cluster_from_kubeconfig
    from tests.support.kube import FAST

    running_pod(fake, "p1")
    running_pod(fake, "p2")
    fake.set_logs(NS, "p1", "base", ["one"])
    fake.set_logs(NS, "p2", "base", ["two"])
    async with cluster_from_kubeconfig(fake.kubeconfig, replace(FAST, max_log_streams=1)) as cluster:
        first_open = asyncio.Event()

        async def follow(name: str, opened: asyncio.Event | None = None) -> None:
            async for _ in cluster.logs.lines(NS, name, "base", follow=True):
                if opened is not None:
                    opened.set()

        first = asyncio.create_task(follow("p1", first_open))
        await asyncio.wait_for(first_open.wait(), 5)
        second = asyncio.create_task(follow("p2"))
        await asyncio.sleep(0.3)  # the second stream would be open by now, were there no bound
        fake.terminate(NS, "p1", exit_code=0)  # the first stream ends: the second may open
        await asyncio.wait_for(first, 5)
        fake.terminate(NS, "p2", exit_code=0)
        await asyncio.wait_for(second, 5)
    logs = {r.name: r for r in fake.requests if r.verb == "log"}
    assert logs["p2"].time >= logs["p1"].time + logs["p1"].duration - 0.05, "p2 waited for p1's stream"
    assert logs["p1"].duration >= 0.3


async def test_a_follow_stream_ends_when_the_pod_is_force_deleted(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    """No container stop is seen on a force delete; the stream must still end (as the kubelet's)."""
    running_pod(fake, "p")
    fake.set_logs(NS, "p", "base", ["one"])
    opened = asyncio.Event()

    async def follow() -> None:
        async for _ in cluster.logs.lines(NS, "p", "base", follow=True):
            opened.set()

    reader = asyncio.create_task(follow())
    await asyncio.wait_for(opened.wait(), 5)
    fake.force_delete(NS, "p")
    await asyncio.wait_for(reader, 5)
