"""WATCH over the wire: booleans, replay, synthetic ADDED, bookmarks, 410, selectors, timeouts."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp
import anyio
import pytest

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import watch_lines
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("spelling", ["true", "True", "1", "t", "T", "TRUE"])
async def test_watch_booleans_parse_like_go(fake_kube: FakeKube, spelling: str) -> None:
    fake_kube.create_pod("default", name="a")
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{fake_kube.url}/api/v1/namespaces/default/pods",
            params={"watch": spelling, "timeoutSeconds": "0.2"},
        ) as resp,
    ):
        assert resp.status == 200
        events = [json.loads(line) async for line in resp.content]
    assert [e["type"] for e in events] == ["ADDED"]


async def test_watch_false_is_a_list(fake_kube: FakeKube) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake_kube.url}/api/v1/namespaces/default/pods", params={"watch": "False"}) as resp,
    ):
        assert (await resp.json())["kind"] == "PodList"


async def test_rv_empty_or_zero_gives_synthetic_added(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    fake_kube.create_pod("default", name="b")
    fake_kube.start("default", "b")
    for rv in (None, "0"):
        kwargs = {"resource_version": rv} if rv else {}
        events = await watch_lines(core, timeout_seconds=0.3, **kwargs)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
        ]
        assert events[1]["object"]["kind"] == "Pod"
        assert events[1]["object"]["status"]["phase"] == "Running"


async def test_rv_replays_newer_events_only(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    rv = fake_kube.resource_version
    fake_kube.start("default", "a")
    fake_kube.terminate("default", "a")
    events = await watch_lines(core, resource_version=str(rv), timeout_seconds=0.3)
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED", "MODIFIED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert versions[0] > rv
    assert events[-1]["object"]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


async def test_live_events_are_flushed_per_line(fake_kube: FakeKube, core: Any) -> None:
    resp = await core.list_namespaced_pod("default", watch=True, timeout_seconds=5, _preload_content=False)
    fake_kube.create_pod("default", name="a")
    first = json.loads(await resp.content.readline())
    assert first["type"] == "ADDED"
    fake_kube.start("default", "a")  # two writes: scheduled, then running
    scheduled = json.loads(await resp.content.readline())
    running = json.loads(await resp.content.readline())
    resp.close()
    assert scheduled["type"] == "MODIFIED"
    assert scheduled["object"]["spec"]["nodeName"] == "node-1"
    assert running["object"]["status"]["phase"] == "Running"


async def test_compacted_rv_gives_200_with_one_410_error_then_eof(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    old = fake_kube.resource_version
    fake_kube.start("default", "a")
    fake_kube.compact()
    resp = await core.list_namespaced_pod(
        "default", watch=True, resource_version=str(old), timeout_seconds=5, _preload_content=False
    )
    assert resp.status == 200
    lines = [json.loads(line) async for line in resp.content]
    assert len(lines) == 1
    assert lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert status["kind"] == "Status"
    assert status["code"] == 410
    assert status["reason"] == "Expired"
    assert status["status"] == "Failure"
    assert "too old resource version" in status["message"]


async def test_history_limit_compacts_automatically() -> None:
    async with FakeKube(history_limit=3) as kube:
        created = int(kube.create_pod("default", name="a")["metadata"]["resourceVersion"])
        kube.start("default", "a")  # two events
        kube.terminate("default", "a")  # a third: the ADDED falls out of the history

        async def watch_from(rv: int) -> list[dict[str, Any]]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{kube.url}/api/v1/namespaces/default/pods",
                    params={"watch": "1", "resourceVersion": str(rv), "timeoutSeconds": "0.2"},
                ) as resp,
            ):
                assert resp.status == 200
                return [json.loads(line) async for line in resp.content]

        expired = await watch_from(created - 1)
        kept = await watch_from(created)
    assert [e["type"] for e in expired] == ["ERROR"]
    assert expired[0]["object"]["code"] == 410
    assert [e["type"] for e in kept] == ["MODIFIED", "MODIFIED", "MODIFIED"]


async def test_bookmarks_carry_resource_version(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.bookmark_interval = 0.05
    fake_kube.create_pod("default", name="a")
    rv = fake_kube.resource_version
    resp = await core.list_namespaced_pod(
        "default",
        watch=True,
        resource_version=str(rv),
        allow_watch_bookmarks=True,
        timeout_seconds=5,
        _preload_content=False,
    )
    event = json.loads(await resp.content.readline())
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"]["resourceVersion"] == str(rv)
    assert event["object"]["kind"] == "Pod"
    resp.close()


async def test_no_bookmarks_unless_allowed(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.bookmark_interval = 0.02
    events = await watch_lines(core, timeout_seconds=0.3)
    assert events == []


async def test_timeout_seconds_ends_stream_cleanly(fake_kube: FakeKube, core: Any) -> None:
    started = time.monotonic()
    events = await watch_lines(core, timeout_seconds=1)
    elapsed = time.monotonic() - started
    assert events == []
    assert 0.9 <= elapsed < 10  # ended by the server at timeout_seconds (not never); 10x margin


async def watch_from(core: Any, rv: int, **selector: str) -> Any:
    """A raw WATCH from ``rv`` (5 s server timeout) with a label or field selector."""
    return await core.list_namespaced_pod(
        "default", watch=True, resource_version=str(rv), timeout_seconds=5, _preload_content=False, **selector
    )


async def test_label_selector_moves_objects_in_and_out(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a", labels={"watched": "yes"})
    rv = fake_kube.resource_version
    resp = await watch_from(core, rv, label_selector="watched=yes")
    await core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"watched": "no"}}})
    await core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"other": "1"}}})  # invisible
    await core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"watched": "yes"}}})
    fake_kube.create_pod("default", name="b")  # never matches
    fake_kube.start("default", "a")
    seen = [json.loads(await resp.content.readline()) for _ in range(3)]
    resp.close()
    assert [e["type"] for e in seen] == ["DELETED", "ADDED", "MODIFIED"]
    assert seen[0]["object"]["metadata"]["labels"]["watched"] == "no"
    assert all(e["object"]["metadata"]["name"] == "a" for e in seen)


async def test_field_selector_on_phase_moves_objects(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    fake_kube.start("default", "a")
    rv = fake_kube.resource_version
    resp = await watch_from(core, rv, field_selector="status.phase=Running")
    fake_kube.terminate("default", "a", container="base")
    fake_kube.terminate("default", "a", container="airflow-xcom-sidecar")
    event = json.loads(await resp.content.readline())
    resp.close()
    assert event["type"] == "MODIFIED"  # base ended, still Running
    second_resp = await watch_from(core, rv, field_selector="status.phase=Running")
    events = [json.loads(await second_resp.content.readline()) for _ in range(2)]
    second_resp.close()
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[1]["object"]["status"]["phase"] == "Succeeded"


async def test_plain_watch_client_class_works(fake_kube: FakeKube, core: Any) -> None:
    """kubernetes_asyncio's own ``watch.Watch`` decodes our lines into typed objects."""
    from kubernetes_asyncio import watch

    fake_kube.create_pod("default", name="a")
    w = watch.Watch()
    seen = []
    async with w.stream(core.list_namespaced_pod, "default", timeout_seconds=1) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "a")]


async def test_watch_ends_when_server_closes() -> None:
    kube = FakeKube()
    await kube.open()
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"{kube.url}/api/v1/namespaces/default/pods", params={"watch": "true"})
        assert resp.status == 200
        await kube.close()
        rest = await resp.content.read()
        assert rest == b""
        resp.close()


async def test_client_disconnect_unsubscribes_watcher(fake_kube: FakeKube) -> None:
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"{fake_kube.url}/api/v1/namespaces/default/pods", params={"watch": "true"})
        assert resp.status == 200
        assert len(fake_kube.cluster.store.watchers) == 1
        resp.close()
    await eventually(lambda: not fake_kube.cluster.store.watchers)
    fake_kube.create_pod("default", name="after")  # nothing left to deliver to


async def test_clients_hanging_up_mid_stream_log_no_server_error(caplog: pytest.LogCaptureFixture) -> None:
    """A client closing its watch while the fake writes to it is an ordinary end, not a traceback.

    Bookmarks every 0.5 ms keep writes coming; the client lets a few arrive unread before it hangs
    up, so the fake's next write meets a closing transport ("Cannot write to closing transport").
    Before the fix every one of these hang-ups logged an "Error handling request" traceback.
    """
    caplog.set_level(logging.ERROR, logger="aiohttp.server")
    async with FakeKube(bookmark_interval=0.0005) as kube, aiohttp.ClientSession() as session:
        kube.create_pod("default", name="a")
        url = f"{kube.url}/api/v1/namespaces/default/pods"
        for _ in range(100):
            resp = await session.get(url, params={"watch": "true", "allowWatchBookmarks": "true"})
            assert resp.status == 200
            assert json.loads(await resp.content.readline())["type"] == "ADDED"
            await anyio.sleep(0.002)  # not synchronisation: unread bookmarks pile up before the hang-up
            resp.close()
        await eventually(lambda: not kube.cluster.store.watchers)
    assert [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"] == []


async def test_thousand_pods_fan_out_to_several_watchers(fake_kube: FakeKube) -> None:
    """Benchmarks run 1,000+ pods: every watcher gets every event, in order."""
    watchers = 5
    pods = 1000

    async def consume(session: aiohttp.ClientSession, ready: Any) -> list[int]:
        async with session.get(
            f"{fake_kube.url}/api/v1/namespaces/default/pods",
            params={"watch": "1", "resourceVersion": str(fake_kube.resource_version), "timeoutSeconds": "30"},
        ) as resp:
            ready.set()
            versions = []
            async for line in resp.content:
                versions.append(int(json.loads(line)["object"]["metadata"]["resourceVersion"]))
                if len(versions) == 3 * pods:  # ADDED, MODIFIED (deletionTimestamp), DELETED
                    return versions
        return versions

    import anyio

    results: list[list[int]] = []
    async with aiohttp.ClientSession() as session, anyio.create_task_group() as group:
        for _ in range(watchers):
            ready = anyio.Event()

            async def run(ready: Any = ready) -> None:
                results.append(await consume(session, ready))

            group.start_soon(run)
            await ready.wait()
        for index in range(pods):
            fake_kube.create_pod("default", name=f"p{index}")
            fake_kube.force_delete("default", f"p{index}")
    assert len(results) == watchers
    expected = list(range(results[0][0], results[0][0] + 3 * pods))
    for versions in results:
        assert versions == expected  # every event, in resourceVersion order, nothing skipped


async def test_name_pinned_watches_see_only_their_pod(fake_kube: FakeKube, core: Any) -> None:
    """Per-pod watches (``metadata.name=x``) are indexed; each still sees exactly its pod's events."""
    for index in range(3):
        fake_kube.create_pod("default", name=f"p{index}")
    rv = fake_kube.resource_version
    responses = [
        await core.list_namespaced_pod(
            "default",
            watch=True,
            resource_version=str(rv),
            field_selector=f"metadata.name=p{index}",
            timeout_seconds=5,
            _preload_content=False,
        )
        for index in range(3)
    ]
    assert len(fake_kube.cluster.store.watchers) == 3
    for index in (2, 0, 1):
        fake_kube.terminate("default", f"p{index}", exit_code=index)
    for index, resp in enumerate(responses):
        event = json.loads(await resp.content.readline())
        resp.close()
        assert event["object"]["metadata"]["name"] == f"p{index}"
        statuses = event["object"]["status"]["containerStatuses"]
        assert statuses[0]["state"]["terminated"]["exitCode"] == index
    await eventually(lambda: not fake_kube.cluster.store.watchers)
    assert not fake_kube.cluster.store._by_name


async def test_due_bookmark_does_not_starve_queued_events() -> None:
    """A bookmark always due (interval 0) while events wait in the queue: the events still go out.

    The old loop waited with ``wait_for(queue.get(), 0)`` once a bookmark was due; that cancels the
    get before it runs, so with a non-empty queue it spun forever and delivered nothing.
    """
    async with FakeKube(bookmark_interval=0.0) as kube, aiohttp.ClientSession() as session:
        url = f"{kube.url}/api/v1/namespaces/default/pods"
        params = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": "1"}
        async with session.get(url, params=params) as resp:
            assert json.loads(await resp.content.readline())["type"] == "BOOKMARK"
            for index in range(20):
                kube.create_pod("default", name=f"p{index}")
            added: list[str] = []
            while len(added) < 20:
                event = json.loads(await resp.content.readline())
                if event["type"] == "ADDED":
                    added.append(event["object"]["metadata"]["name"])
    assert added == [f"p{index}" for index in range(20)]
