"""The shared pod watcher against the fake API server: one LIST+WATCH, many pods, every fault."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from finalizer.exceptions import FinalizerUnavailableError, KubeRequestError
from finalizer.kube import KubeCluster, Subscription, cluster_from_kubeconfig
from finalizer.kube.stream import unwanted_event
from finalizer.kube.subscription import rv_newer
from finalizer.pod import PodView
from finalizer.testing import FakeKube
from tests.support.kube import FAST, NS, running_pod
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


def base_done(pod: PodView) -> bool:
    base = pod.container("base")
    return base is not None and base.state == "terminated"


def watches(fake: FakeKube) -> list[str]:
    return [r.query for r in fake.requests if r.verb == "watch"]


@contextlib.asynccontextmanager
async def quick_cluster(fake: FakeKube, **changes: object) -> AsyncIterator[KubeCluster]:
    async with cluster_from_kubeconfig(fake.kubeconfig, dataclasses.replace(FAST, **changes)) as cluster:
        yield cluster


@pytest.mark.parametrize(
    ("candidate", "known", "newer"),
    [
        ("5", None, True),
        ("5", "4", True),
        ("4", "5", False),
        ("5", "5", False),
        ("10", "9", True),
        ("x", "5", True),
    ],
)
def test_rv_newer(candidate: str, known: str | None, newer: bool) -> None:
    assert rv_newer(candidate, known) is newer


def _line(name: str, rv: str = "7", *, extra: str = "", type_: str = "MODIFIED") -> bytes:
    return (
        f'{{"type":"{type_}","object":{{"kind":"Pod","metadata":{{"name":"{name}","namespace":"default",'
        f'"resourceVersion":"{rv}"{extra}}},"spec":{{"containers":[{{"name":"base"}}]}}}}}}\n'
    ).encode()


WANTED = {"mine": [object()]}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (_line("theirs"), (True, "7")),
        (_line("mine"), (False, None)),
        (_line("theirs").replace(b'"name":"base"', b'"name":"mine"'), (False, None)),  # a container "mine"
        (_line("theirs").replace(b'"name":"theirs"', b'"name" : "theirs"'), (True, "7")),
        (_line("theirs", extra=',"annotations":{"a":"{\\"name\\":\\"mine\\"}"}'), (True, "7")),
        (_line("theirs", extra=',"x":{"resourceVersion":"9"}'), (False, None)),  # ambiguous: parse
        (_line("theirs", type_="BOOKMARK"), (False, None)),
        (b'{"type":"ERROR","object":{"kind":"Status","code":410}}', (False, None)),
        (b'{"type":"ADDED","object":{}}', (False, None)),
    ],
)
def test_unwanted_event_prefilter(line: bytes, expected: tuple[bool, str | None]) -> None:
    assert unwanted_event(line, WANTED) == expected


async def test_one_watch_connection_serves_1000_pods(fake: FakeKube, cluster: KubeCluster) -> None:
    uids = {f"p{i}": running_pod(fake, f"p{i}", labels={"app": "load"}) for i in range(1000)}
    fake.clear_requests()
    async with contextlib.AsyncExitStack() as stack:
        subs: dict[str, Subscription] = {}
        for name, uid in uids.items():
            subs[name] = await stack.enter_async_context(cluster.watcher.subscribe(NS, name, uid, "app=load"))
        for sub in subs.values():
            await sub.wait(lambda p: True, timeout=10)
        await eventually(lambda: len(fake.cluster.store.watchers) == 1)
        for name in ("p0", "p500", "p999"):
            fake.terminate(NS, name, "base", exit_code=0)
        for name in ("p0", "p500", "p999"):
            pod = await subs[name].wait(base_done, timeout=10)
            assert pod is not None
            assert pod.uid == uids[name]
        assert all(s.known for s in subs.values())
        assert not any(base_done(s.latest) for n, s in subs.items() if n not in ("p0", "p500", "p999"))  # type: ignore[arg-type]
        assert cluster.watcher.subscribed == 1000
        counts = fake.request_counts()
        assert counts[("watch", "pods")] == 1
        # One LIST, in pages of 500: the second page continues the first.
        assert cluster.watcher.stats()[f"{NS}?app=load"].lists == 1
        lists = [r.query for r in fake.requests if r.verb == "list"]
        assert len(lists) == 2
        assert "continue=" not in lists[0]
        assert "continue=" in lists[1]
        assert counts[("get", "pods")] == 0
        assert len(fake.cluster.store.watchers) == 1
    # The last unsubscribe stops the watch.
    await eventually(lambda: not fake.cluster.store.watchers)
    assert cluster.watcher.stats() == {}


async def test_already_finished_pod_is_seen_at_once(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.terminate(NS, "p", "base", exit_code=2, message="bad input")
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        pod = await sub.wait(base_done, timeout=2)
        assert pod is not None
        assert pod.container("base").exit_code == 2  # type: ignore[union-attr]
        assert sub.latest is pod


async def test_already_gone_pod_is_seen_at_once(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "other")
    async with cluster.watcher.subscribe(NS, "p", "uid-of-a-deleted-pod") as sub:
        assert await sub.wait(base_done, timeout=2) is None
        assert sub.gone
        assert sub.latest is None
        assert "not in the LIST" in (sub.gone_reason or "")


async def test_uid_mismatch_means_gone(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    async with cluster.watcher.subscribe(NS, "p", "an-older-uid") as sub:
        assert await sub.wait(base_done, timeout=2) is None
        assert "now belongs to pod uid" in (sub.gone_reason or "")


async def test_deleted_while_watched(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        await sub.wait(lambda p: True, timeout=2)
        fake.evict(NS, "p")
        assert await sub.wait(base_done, timeout=5) is None
        assert "deleted" in (sub.gone_reason or "")


async def test_recreated_under_the_same_name(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    running_pod(fake, "keep-watch-alive")
    async with (
        cluster.watcher.subscribe(NS, "p", uid) as old,
        cluster.watcher.subscribe(NS, "keep-watch-alive", "x") as _,
    ):
        await old.wait(lambda p: True, timeout=2)
        fake.force_delete(NS, "p")
        new_uid = running_pod(fake, "p")
        assert await old.wait(base_done, timeout=2) is None
        async with cluster.watcher.subscribe(NS, "p", new_uid) as new:
            fake.terminate(NS, "p", "base", exit_code=0)
            pod = await new.wait(base_done, timeout=2)
            assert pod is not None
            assert pod.uid == new_uid


async def test_late_subscriber_gets_one_get(fake: FakeKube, cluster: KubeCluster) -> None:
    first = running_pod(fake, "first")
    second = running_pod(fake, "second")
    fake.terminate(NS, "second", "base", exit_code=0)
    async with cluster.watcher.subscribe(NS, "first", first) as sub1:
        await sub1.wait(lambda p: True, timeout=2)
        await eventually(lambda: len(fake.cluster.store.watchers) == 1)
        fake.clear_requests()
        async with (
            cluster.watcher.subscribe(NS, "second", second) as sub2,
            cluster.watcher.subscribe(NS, "never-existed", "u") as sub3,
        ):
            assert await sub2.wait(base_done, timeout=2) is not None
            assert await sub3.wait(base_done, timeout=2) is None
        counts = fake.request_counts()
        assert counts[("get", "pods")] == 2
        assert counts[("watch", "pods")] == 0
        assert counts[("list", "pods")] == 0


async def test_unsubscribed_pods_are_dropped(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "mine")
    running_pod(fake, "theirs")
    async with cluster.watcher.subscribe(NS, "mine", uid) as sub:
        await sub.wait(lambda p: True, timeout=2)
        fake.terminate(NS, "theirs", "base", exit_code=0)
        fake.terminate(NS, "mine", "base", exit_code=0)
        await sub.wait(base_done, timeout=2)
        stats = cluster.watcher.stats()[NS]
        assert stats.events_dropped >= 1
        assert stats.events > stats.events_dropped


async def test_dropped_events_still_advance_the_resource_version() -> None:
    async with FakeKube(bookmark_interval=3600) as fake, quick_cluster(fake) as cluster:
        uid = running_pod(fake, "mine")
        async with cluster.watcher.subscribe(NS, "mine", uid) as sub:
            await sub.wait(lambda p: True, timeout=2)
            await eventually(lambda: len(fake.cluster.store.watchers) == 1)
            for i in range(3):
                running_pod(fake, f"theirs-{i}")
            target = str(fake.resource_version)
            stream = cluster.watcher._streams[(NS, None)]
            await eventually(lambda: stream.resource_version == target)
            assert stream.stats.bookmarks == 0
            # Every event (create, schedule, start of three pods) was dropped before any parse.
            assert stream.stats.events_dropped == stream.stats.events >= 3
            assert sub.latest is not None
            assert sub.latest.name == "mine"


async def test_two_subscribers_one_pod(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    async with cluster.watcher.subscribe(NS, "p", uid) as a, cluster.watcher.subscribe(NS, "p", uid) as b:
        fake.terminate(NS, "p", "base", exit_code=0)
        assert await a.wait(base_done, timeout=2) is await b.wait(base_done, timeout=2)  # one parse, shared


async def test_selectors_get_their_own_watch(fake: FakeKube, cluster: KubeCluster) -> None:
    a = running_pod(fake, "a", labels={"team": "a"})
    b = running_pod(fake, "b", labels={"team": "b"})
    async with (
        cluster.watcher.subscribe(NS, "a", a, "team=a") as sa,
        cluster.watcher.subscribe(NS, "b", b, "team=b") as sb,
    ):
        await sa.wait(lambda p: True, timeout=2)
        await sb.wait(lambda p: True, timeout=2)
        assert sorted(cluster.watcher.stats()) == [f"{NS}?team=a", f"{NS}?team=b"]
        await eventually(lambda: len(fake.cluster.store.watchers) == 2)
        assert sorted(q for q in watches(fake) if "labelSelector=team%3D" in q) == sorted(watches(fake))


async def test_wait_timeout(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        with pytest.raises(TimeoutError):
            await sub.wait(base_done, timeout=0.2)
        assert sub.latest is not None


async def test_410_expired_relists(fake: FakeKube) -> None:
    uid = running_pod(fake, "p")
    running_pod(fake, "q")
    async with (
        quick_cluster(fake, watch_timeout_seconds=1) as cluster,
        cluster.watcher.subscribe(NS, "p", uid) as sub,
        cluster.watcher.subscribe(NS, "q", "x"),
    ):
        await sub.wait(lambda p: True, timeout=2)
        # Keep the watch down while the pod goes and the history is compacted.
        fake.faults.add("GET", r"watch=True", reset=True, times=None)
        await eventually(lambda: any(r.verb == "watch" and r.status == 0 for r in fake.requests), 5)
        fake.force_delete(NS, "p")
        fake.compact()
        fake.faults.clear()
        assert await sub.wait(base_done, timeout=5) is None
        stats = cluster.watcher.stats()[NS]
        assert stats.expired >= 1
        assert stats.lists == 2
        assert "not in the LIST" in (sub.gone_reason or "")


async def test_bookmarks_advance_the_resource_version(fake: FakeKube) -> None:
    uid = running_pod(fake, "p")
    async with (
        quick_cluster(fake, watch_timeout_seconds=1) as cluster,
        cluster.watcher.subscribe(NS, "p", uid) as sub,
    ):
        await sub.wait(lambda p: True, timeout=2)
        stream = cluster.watcher._streams[(NS, None)]
        for i in range(5):  # changes the watch of NS never sees
            running_pod(fake, f"elsewhere-{i}", ns="other")
        target = str(fake.resource_version)
        await eventually(lambda: stream.resource_version == target, 5)
        assert stream.stats.bookmarks >= 1
        assert stream.stats.events == 0  # only bookmarks moved it
        # The next watch resumes from the bookmark's resourceVersion.
        await eventually(lambda: any(f"resourceVersion={target}" in q for q in watches(fake)), 5)


async def test_plain_text_429_retry_after_is_honoured(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.faults.add("GET", r"watch=True", plaintext_429=True, retry_after=1, times=1)
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        await sub.wait(lambda p: True, timeout=2)
        await eventually(lambda: len(watches(fake)) >= 2, 5)
        fake.terminate(NS, "p", "base", exit_code=0)
        assert await sub.wait(base_done, timeout=2) is not None
        stats = cluster.watcher.stats()[NS]
        assert stats.errors == 1
        assert "HTTP 429: Too many requests" in (stats.last_error or "")
    attempts = [r for r in fake.requests if r.verb == "watch"]
    assert [r.status for r in attempts[:2]] == [429, 200]
    assert attempts[1].time - attempts[0].time >= 0.95  # FAST backoff alone would be 0.05 s


async def test_list_500_is_retried(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.faults.add("GET", r"/namespaces/default/pods\?(?!.*watch=True)", status=500, times=2)
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        assert await sub.wait(lambda p: True, timeout=5) is not None
    assert [r.status for r in fake.requests if r.verb == "list"] == [500, 500, 200]


async def test_forbidden_list_fails_the_subscribers(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.faults.add("GET", r"/namespaces/default/pods\?(?!.*watch=True)", status=403, times=1)
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        with pytest.raises(KubeRequestError):
            await sub.wait(base_done, timeout=2)
        # The watch keeps trying and recovers.
        await eventually(lambda: sub.error is None)
        fake.terminate(NS, "p", "base", exit_code=0)
        assert await sub.wait(base_done, timeout=5) is not None


async def test_watch_connection_reset_reconnects(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.faults.add("GET", r"watch=True", reset=True, times=2)
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        await sub.wait(lambda p: True, timeout=2)
        fake.terminate(NS, "p", "base", exit_code=0)
        assert await sub.wait(base_done, timeout=5) is not None
        stats = cluster.watcher.stats()[NS]
        assert stats.errors >= 1
        assert stats.watches_opened == 1
    assert [r.status for r in fake.requests if r.verb == "watch"][:3] == [0, 0, 200]


async def test_periodic_resync(fake: FakeKube) -> None:
    uid = running_pod(fake, "p")
    async with (
        quick_cluster(fake, watch_timeout_seconds=1, resync_seconds=0.5) as cluster,
        cluster.watcher.subscribe(NS, "p", uid),
    ):
        await eventually(lambda: sum(r.verb == "list" for r in fake.requests) >= 2, 5)


async def test_aclose_stops_every_watch(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        await sub.wait(lambda p: True, timeout=2)
        await cluster.watcher.aclose()
        await eventually(lambda: not fake.cluster.store.watchers)
    with pytest.raises(FinalizerUnavailableError):
        async with cluster.watcher.subscribe(NS, "p", uid):
            pass


async def test_garbage_on_the_watch_is_transient(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.faults.add("GET", r"watch=True", status=200, body="<html>proxy error</html>", times=1)
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        await sub.wait(lambda p: True, timeout=2)
        await eventually(lambda: len(watches(fake)) >= 2)
        fake.terminate(NS, "p", "base", exit_code=0)
        assert await sub.wait(base_done, timeout=5) is not None
        stats = cluster.watcher.stats()[NS]
        assert stats.errors == 1
        assert "malformed" in (stats.last_error or "")


async def test_garbage_list_body_is_transient_and_relisted(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.faults.add("GET", r"/pods\?(?!.*watch=)", status=200, body='"not a PodList"', times=1)
    async with cluster.watcher.subscribe(NS, "p", uid) as sub:
        assert await sub.wait(lambda p: True, timeout=5) is not None
        stats = cluster.watcher.stats()[NS]
        assert stats.errors == 1
        assert "expected a PodList" in (stats.last_error or "")
        assert stats.lists == 1
    assert [r.status for r in fake.requests if r.verb == "list"] == [200, 200]


async def test_expired_continue_token_restarts_the_list(fake: FakeKube) -> None:
    uids = [running_pod(fake, f"p{i}") for i in range(5)]
    fake.faults.add("GET", r"continue=", status=410, times=1)
    async with (
        quick_cluster(fake, list_page_size=2) as cluster,
        cluster.watcher.subscribe(NS, "p4", uids[4]) as sub,
    ):
        assert await sub.wait(lambda p: True, timeout=5) is not None
        stats = cluster.watcher.stats()[NS]
        assert stats.expired == 1
        assert stats.lists == 1
    pages = [(r.status, "continue=" in r.query) for r in fake.requests if r.verb == "list"]
    assert pages == [(200, False), (410, True), (200, False), (200, True), (200, True)]


async def test_stalled_watch_is_abandoned(fake: FakeKube) -> None:
    """A watch that sends nothing (half-open connection, stuck proxy) times out and reconnects."""
    uid = running_pod(fake, "p")
    fake.faults.add("GET", r"watch=True", status=None, latency=30.0, times=1)
    async with (
        quick_cluster(fake, watch_timeout_seconds=1, watch_stall_margin=0.5) as cluster,
        cluster.watcher.subscribe(NS, "p", uid) as sub,
    ):
        await sub.wait(lambda p: True, timeout=2)
        await eventually(lambda: cluster.watcher.stats()[NS].watches_opened >= 1, 5)
        stats = cluster.watcher.stats()[NS]
        assert stats.errors == 1
        assert "timed out" in (stats.last_error or "")
        fake.terminate(NS, "p", "base", exit_code=0)
        assert await sub.wait(base_done, timeout=5) is not None
