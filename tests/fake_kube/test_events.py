"""Pod events (LIST/WATCH), which the upstream operator reads while a pod starts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import read_json

pytestmark = pytest.mark.anyio


async def test_start_records_scheduler_and_kubelet_events(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.create_pod("default", name="other")
    fake_kube.start("default", "p")
    fake_kube.start("default", "other")
    events = await core.list_namespaced_event("default", field_selector="involvedObject.name=p")
    reasons = [(e.reason, e.involved_object.field_path) for e in events.items]
    assert reasons[0] == ("Scheduled", None)
    assert ("Started", "spec.containers{base}") in reasons
    assert ("Started", "spec.containers{airflow-xcom-sidecar}") in reasons
    assert all(e.involved_object.name == "p" for e in events.items)
    assert events.items[0].source.component == "default-scheduler"
    assert events.items[0].message == "Successfully assigned default/p to node-1"


async def test_failure_events(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="img")
    fake_kube.image_pull_failure("default", "img", "ImagePullBackOff", message="manifest unknown")
    fake_kube.create_pod("default", name="cpu")
    fake_kube.unschedulable("default", "cpu", message="0/2 nodes are available")
    warnings = await core.list_namespaced_event("default", field_selector="type=Warning")
    pairs = {(e.involved_object.name, e.reason) for e in warnings.items}
    assert pairs == {("img", "Failed"), ("img", "BackOff"), ("cpu", "FailedScheduling")}
    assert [e["reason"] for e in fake_kube.events("default", "cpu")] == ["FailedScheduling"]


async def test_kill_events_on_delete(fake_kube: FakeKube) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    fake_kube.evict("default", "p")
    killing = [e["message"] for e in fake_kube.events("default", "p") if e["reason"] == "Killing"]
    assert killing == ["Stopping container base", "Stopping container airflow-xcom-sidecar"]


async def test_event_watch_replays_and_streams(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.schedule("default", "p")
    listing = await read_json(await core.list_namespaced_event("default", _preload_content=False))
    assert listing["kind"] == "EventList"
    rv = listing["metadata"]["resourceVersion"]
    resp = await core.list_namespaced_event(
        "default",
        watch=True,
        resource_version=rv,
        field_selector="involvedObject.name=p",
        timeout_seconds=5,
        _preload_content=False,
    )
    fake_kube.start("default", "p")
    first = json.loads(await resp.content.readline())
    resp.close()
    assert first["type"] == "ADDED"
    assert first["object"]["kind"] == "Event"
    assert first["object"]["reason"] == "Pulled"
    synthetic = await core.list_namespaced_event(
        "default", watch=True, timeout_seconds=0.2, _preload_content=False
    )
    lines = [json.loads(line) async for line in synthetic.content]
    assert [e["object"]["reason"] for e in lines][:1] == ["Scheduled"]


async def test_event_field_selector_is_validated(fake_kube: FakeKube, core: Any) -> None:
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_event("default", field_selector="status.phase=Running")
    assert info.value.status == 400


async def test_typed_watch_of_events(fake_kube: FakeKube, core: Any) -> None:
    """The provider's async hook watches events with ``watch.Watch``; typed objects must decode."""
    from kubernetes_asyncio import watch

    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    seen = []
    async with watch.Watch().stream(
        core.list_namespaced_event,
        namespace="default",
        field_selector="involvedObject.name=p",
        timeout_seconds=1,
    ) as stream:
        async for event in stream:
            seen.append(event["object"].reason)
    assert seen[0] == "Scheduled"
    assert seen.count("Started") == 2
