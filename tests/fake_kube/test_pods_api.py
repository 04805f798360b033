"""LIST / GET / CREATE / PATCH / DELETE through unmodified kubernetes_asyncio."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import read_json

pytestmark = pytest.mark.anyio


async def test_list_is_a_podlist_with_resource_version(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    fake_kube.create_pod("other", name="b")
    body = await read_json(await core.list_namespaced_pod("default", _preload_content=False))
    assert body["kind"] == "PodList"
    assert body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"] == str(fake_kube.resource_version)
    assert [item["metadata"]["name"] for item in body["items"]] == ["a"]
    item = body["items"][0]
    assert "kind" not in item
    assert "apiVersion" not in item
    assert isinstance(item["metadata"]["resourceVersion"], str)
    assert item["metadata"]["uid"]
    assert item["metadata"]["creationTimestamp"]


async def test_list_all_namespaces(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    fake_kube.create_pod("other", name="b")
    resp = await core.list_pod_for_all_namespaces(_preload_content=False)
    names = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in (await read_json(resp))["items"]]
    assert names == [("default", "a"), ("other", "b")]


@pytest.mark.parametrize(
    ("label_selector", "field_selector", "expected"),
    [
        ("app=x", None, ["a", "b"]),
        ("app==x,tier!=db", None, ["a"]),
        ("app in (x, y)", None, ["a", "b", "c"]),
        ("app notin (x)", None, ["c", "d"]),
        ("tier", None, ["b"]),
        ("!tier", None, ["a", "c", "d"]),
        (None, "metadata.name=c", ["c"]),
        (None, "status.phase=Running", ["b"]),
        (None, "status.phase!=Running", ["a", "c", "d"]),
        ("app=x", "status.phase=Pending", ["a"]),
    ],
)
async def test_list_selectors(
    fake_kube: FakeKube,
    core: Any,
    label_selector: str | None,
    field_selector: str | None,
    expected: list[str],
) -> None:
    fake_kube.create_pod("default", name="a", labels={"app": "x"})
    fake_kube.create_pod("default", name="b", labels={"app": "x", "tier": "db"})
    fake_kube.create_pod("default", name="c", labels={"app": "y"})
    fake_kube.create_pod("default", name="d")
    fake_kube.start("default", "b")
    kwargs = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
    body = await read_json(await core.list_namespaced_pod("default", _preload_content=False, **kwargs))
    assert [p["metadata"]["name"] for p in body["items"]] == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"field_selector": "spec.bogus=1"}, "field label not supported"),
        ({"label_selector": "a b"}, "unable to parse requirement"),
        ({"watch": "maybe"}, "ParseBool"),
    ],
)
async def test_bad_query_is_400_status(
    fake_kube: FakeKube, core: Any, kwargs: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default", **kwargs)
    assert info.value.status == 400
    body = json.loads(info.value.body)
    assert body["kind"] == "Status"
    assert body["reason"] == "BadRequest"
    assert fragment in body["message"]


async def test_get_and_404_status(fake_kube: FakeKube, core: Any) -> None:
    created = fake_kube.create_pod("default", name="a")
    got = await read_json(await core.read_namespaced_pod("a", "default", _preload_content=False))
    assert got["kind"] == "Pod"
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod("missing", "default")
    assert info.value.status == 404
    body = json.loads(info.value.body)
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "kind": "pods"},
        "code": 404,
    }


async def test_create_assigns_identity_and_typed_client_parses_it(fake_kube: FakeKube, core: Any) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "made", "labels": {"k": "v"}},
        "spec": {"containers": [{"name": "base", "image": "busybox"}]},
    }
    pod = await core.create_namespaced_pod("default", manifest)
    assert pod.metadata.uid
    assert pod.metadata.resource_version
    assert pod.metadata.creation_timestamp
    assert pod.status.phase == "Pending"
    stored = fake_kube.get_pod("default", "made")
    assert stored is not None
    assert stored["metadata"]["uid"] == pod.metadata.uid
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_pod("default", manifest)
    assert info.value.status == 409


async def test_create_generate_name(fake_kube: FakeKube, core: Any) -> None:
    manifest = {
        "metadata": {"generateName": "job-"},
        "spec": {"containers": [{"name": "base", "image": "x"}]},
    }
    pod = await core.create_namespaced_pod("default", manifest)
    assert pod.metadata.name.startswith("job-")
    assert len(pod.metadata.name) == len("job-") + 5


@pytest.mark.parametrize(
    "content_type", ["application/merge-patch+json", "application/strategic-merge-patch+json"]
)
async def test_patch_labels(fake_kube: FakeKube, core: Any, content_type: str) -> None:
    before = fake_kube.create_pod("default", name="a", labels={"keep": "1", "drop": "1"})
    resp = await core.patch_namespaced_pod(
        "a",
        "default",
        {"metadata": {"labels": {"drop": None, "new": "yes"}}},
        _content_type=content_type,
        _preload_content=False,
    )
    body = await read_json(resp)
    assert body["metadata"]["labels"] == {"keep": "1", "new": "yes"}
    assert int(body["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert body["metadata"]["uid"] == before["metadata"]["uid"]


async def test_delete_graceful_then_gone(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    fake_kube.start("default", "a")
    fake_kube.deletion_delay = 0.05
    body = await read_json(await core.delete_namespaced_pod("a", "default", _preload_content=False))
    assert body["kind"] == "Pod"
    assert body["metadata"]["deletionTimestamp"]
    assert body["metadata"]["deletionGracePeriodSeconds"] == 30
    assert fake_kube.get_pod("default", "a") is not None
    events = await _watch_until_deleted(core)
    assert events[-1]["type"] == "DELETED"
    assert fake_kube.get_pod("default", "a") is None


async def _watch_until_deleted(core: Any) -> list[dict[str, Any]]:

    resp = await core.list_namespaced_pod("default", watch=True, timeout_seconds=5, _preload_content=False)
    events = []
    async for line in resp.content:
        events.append(json.loads(line))
        if events[-1]["type"] == "DELETED":
            resp.close()
            break
    return events


async def test_delete_grace_zero_is_immediate_and_repeat_is_404(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    fake_kube.start("default", "a")
    await core.delete_namespaced_pod("a", "default", grace_period_seconds=0)
    assert fake_kube.get_pod("default", "a") is None
    with pytest.raises(ApiException) as info:
        await core.delete_namespaced_pod("a", "default")
    assert info.value.status == 404
    assert '"reason":"NotFound"' in info.value.body


async def test_delete_uid_precondition(fake_kube: FakeKube, core: Any) -> None:
    pod = fake_kube.create_pod("default", name="a")
    with pytest.raises(ApiException) as info:
        await core.delete_namespaced_pod("a", "default", body={"preconditions": {"uid": "not-the-uid"}})
    assert info.value.status == 409
    body = json.loads(info.value.body)
    assert body["reason"] == "Conflict"
    assert "Precondition failed" in body["message"]
    assert fake_kube.get_pod("default", "a") is not None
    await core.delete_namespaced_pod("a", "default", body={"preconditions": {"uid": pod["metadata"]["uid"]}})
    assert fake_kube.get_pod("default", "a") is None  # never scheduled: deleted at once


async def test_list_pagination(fake_kube: FakeKube, core: Any) -> None:
    for index in range(5):
        fake_kube.create_pod("default", name=f"p{index}")
    first = await read_json(await core.list_namespaced_pod("default", limit=2, _preload_content=False))
    assert [p["metadata"]["name"] for p in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["remainingItemCount"] == 3
    token = first["metadata"]["continue"]
    second = await read_json(
        await core.list_namespaced_pod("default", limit=2, _continue=token, _preload_content=False)
    )
    assert [p["metadata"]["name"] for p in second["items"]] == ["p2", "p3"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    third = await read_json(
        await core.list_namespaced_pod(
            "default", limit=2, _continue=second["metadata"]["continue"], _preload_content=False
        )
    )
    assert [p["metadata"]["name"] for p in third["items"]] == ["p4"]
    assert "continue" not in third["metadata"]


async def test_list_continue_expired_and_invalid(fake_kube: FakeKube, core: Any) -> None:
    for index in range(3):
        fake_kube.create_pod("default", name=f"p{index}")
    first = await read_json(await core.list_namespaced_pod("default", limit=1, _preload_content=False))
    fake_kube.create_pod("default", name="late")
    fake_kube.compact()
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default", limit=1, _continue=first["metadata"]["continue"])
    assert info.value.status == 410
    assert json.loads(info.value.body)["reason"] == "Expired"
    with pytest.raises(ApiException) as bad:
        await core.list_namespaced_pod("default", _continue="%%%")
    assert bad.value.status == 400


async def test_patch_with_kind_keeps_list_items_bare(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    await core.patch_namespaced_pod(
        "a", "default", {"kind": "Pod", "apiVersion": "v1", "metadata": {"annotations": {"x": "1"}}}
    )
    body = await read_json(await core.list_namespaced_pod("default", _preload_content=False))
    assert "kind" not in body["items"][0]
    assert body["items"][0]["metadata"]["annotations"] == {"x": "1"}


async def test_patch_stale_resource_version_is_409(fake_kube: FakeKube, core: Any) -> None:
    pod = fake_kube.create_pod("default", name="a")
    fake_kube.start("default", "a")
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_pod(
            "a",
            "default",
            {"metadata": {"resourceVersion": pod["metadata"]["resourceVersion"], "labels": {"x": "1"}}},
        )
    assert info.value.status == 409
    assert json.loads(info.value.body)["reason"] == "Conflict"


async def test_patch_naming_another_uid_is_422_and_writes_nothing(fake_kube: FakeKube, core: Any) -> None:
    """The uid is immutable: the real API answers 422 Invalid ("field is immutable"), not a 409."""
    pod = fake_kube.create_pod("default", name="a")
    uid = pod["metadata"]["uid"]
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_pod("a", "default", {"metadata": {"uid": "other", "labels": {"x": "1"}}})
    assert info.value.status == 422
    status = json.loads(info.value.body)
    assert status["reason"] == "Invalid"
    assert status["message"] == 'Pod "a" is invalid: metadata.uid: Invalid value: "other": field is immutable'
    assert status["details"]["causes"][0]["field"] == "metadata.uid"
    assert "x" not in (fake_kube.get_pod("default", "a") or {})["metadata"].get("labels", {})
    await core.patch_namespaced_pod("a", "default", {"metadata": {"uid": uid, "labels": {"x": "1"}}})
    assert (fake_kube.get_pod("default", "a") or {})["metadata"]["labels"] == {"x": "1"}


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "message"),
    [
        ("POST", "pods", "application/json", b"{not json", "error decoding request body: "),
        ("POST", "pods", "application/json", b"[1]", "the body of the request was in an unknown format"),
        ("PATCH", "pods/a", "application/merge-patch+json", b"{not json", "error decoding patch: "),
        ("PATCH", "pods/a", "application/merge-patch+json", b'"x"', "patch must be a JSON object"),
    ],
)
async def test_create_and_patch_bodies_that_are_not_objects_are_400(
    fake_kube: FakeKube, method: str, path: str, content_type: str, body: bytes, message: str
) -> None:
    fake_kube.create_pod("default", name="a")
    rv = fake_kube.resource_version
    url = f"{fake_kube.url}/api/v1/namespaces/default/{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers={"Content-Type": content_type}) as resp,
    ):
        status = await resp.json()
    assert resp.status == 400
    assert status["kind"] == "Status"
    assert status["reason"] == "BadRequest"
    assert status["message"].startswith(message)
    assert fake_kube.resource_version == rv  # nothing was written
