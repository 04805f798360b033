"""batch/v1 Jobs on the wire: CREATE / GET / LIST / WATCH / DELETE through unmodified BatchV1Api."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from finalizer.testing import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.fake_kube.helpers import read_json
from tests.fake_kube.job_helpers import watch_pods
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

UID_LABEL = "batch.kubernetes.io/controller-uid"


@pytest.fixture
async def batch(k8s_config: Any) -> AsyncIterator[Any]:
    async with client.ApiClient(k8s_config) as api:
        yield client.BatchV1Api(api)


async def test_create_stores_defaults_selector_and_labels(fake_kube: FakeKube, batch: Any) -> None:
    resp = await batch.create_namespaced_job("default", job_manifest("j"), _preload_content=False)
    assert resp.status == 201
    body = await read_json(resp)
    assert (body["kind"], body["apiVersion"]) == ("Job", "batch/v1")
    meta, spec = body["metadata"], body["spec"]
    uid = meta["uid"]
    assert meta["namespace"] == "default"
    assert meta["generation"] == 1
    assert spec["parallelism"] == 1
    assert spec["completions"] == 1
    assert spec["backoffLimit"] == 6
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["selector"] == {"matchLabels": {UID_LABEL: uid}}
    assert spec["manualSelector"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    expected = {UID_LABEL: uid, "batch.kubernetes.io/job-name": "j", "controller-uid": uid, "job-name": "j"}
    assert spec["template"]["metadata"]["labels"] == expected
    assert meta["labels"] == expected  # a Job without labels takes its template's
    assert body["status"] == {}


async def test_work_queue_job_keeps_completions_unset(fake_kube: FakeKube, batch: Any) -> None:
    job = await batch.create_namespaced_job("default", job_manifest("q", parallelism=3))
    assert job.spec.parallelism == 3
    assert job.spec.completions is None


async def test_typed_read_and_read_status_decode(fake_kube: FakeKube, batch: Any) -> None:
    fake_kube.create_job("default", job_manifest("j", parallelism=2, completions=4))
    job = await batch.read_namespaced_job("j", "default")
    assert isinstance(job, client.V1Job)
    assert job.spec.completions == 4
    status = await batch.read_namespaced_job_status("j", "default")
    assert status.metadata.uid == job.metadata.uid
    counts = fake_kube.request_counts()
    assert counts[("get", "jobs")] == 2


async def test_get_missing_is_batch_404_status(fake_kube: FakeKube, batch: Any) -> None:
    with pytest.raises(ApiException) as info:
        await batch.read_namespaced_job_status("nope", "default")
    assert info.value.status == 404
    assert json.loads(info.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'jobs.batch "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "batch", "kind": "jobs"},
        "code": 404,
    }


async def test_create_twice_is_409_already_exists(fake_kube: FakeKube, batch: Any) -> None:
    await batch.create_namespaced_job("default", job_manifest("j"))
    with pytest.raises(ApiException) as info:
        await batch.create_namespaced_job("default", job_manifest("j"))
    assert info.value.status == 409
    body = json.loads(info.value.body)
    assert (body["reason"], body["message"]) == ("AlreadyExists", 'jobs.batch "j" already exists')


async def test_generate_name(fake_kube: FakeKube, batch: Any) -> None:
    manifest = job_manifest("x")
    manifest["metadata"] = {"generateName": "gen-"}
    job = await batch.create_namespaced_job("default", manifest)
    assert job.metadata.name.startswith("gen-")
    assert len(job.metadata.name) == len("gen-") + 5


def _invalid(**changes: Any) -> dict[str, Any]:
    manifest = job_manifest("bad")
    for path, value in changes.items():
        target = manifest
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return manifest


@pytest.mark.parametrize(
    ("manifest", "field", "fragment"),
    [
        (_invalid(spec__parallelism=-1), "spec.parallelism", "must be greater than or equal to 0"),
        (_invalid(spec__completionMode="Sometimes"), "spec.completionMode", 'Unsupported value: "Sometimes"'),
        (_invalid(spec__completionMode="Indexed"), "spec.completions", "when completion mode is Indexed"),
        (_invalid(spec__selector={"matchLabels": {"a": "b"}}), "spec.selector", "not auto-generated"),
        (_invalid(spec__manualSelector=True), "spec.selector", "Required value"),
        (
            _invalid(spec__manualSelector=True, spec__selector={"matchLabels": {"a": "b"}}),
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ),
        (_invalid(spec__template__spec__restartPolicy=None), "spec.template.spec.restartPolicy", '"Always"'),
        (_invalid(spec__template__spec__containers=[]), "spec.template.spec.containers", "Required value"),
        (_invalid(metadata__name="n" * 64), "metadata.name", "must be no more than 63 characters"),
    ],
)
async def test_invalid_job_is_422_with_causes(
    fake_kube: FakeKube, batch: Any, manifest: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ApiException) as info:
        await batch.create_namespaced_job("default", manifest)
    assert info.value.status == 422
    body = json.loads(info.value.body)
    assert body["reason"] == "Invalid"
    assert body["message"].startswith('Job.batch "')
    assert body["details"]["group"] == "batch"
    [cause] = body["details"]["causes"]
    assert cause["field"] == field
    assert fragment in cause["message"]
    assert fake_kube.list_jobs() == []
    assert fake_kube.list_pods() == []


async def test_manual_selector_that_matches_is_kept(fake_kube: FakeKube, batch: Any) -> None:
    manifest = job_manifest("m", labels={"app": "x"})
    manifest["spec"].update(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    job = await batch.create_namespaced_job("default", manifest)
    assert job.spec.selector.match_labels == {"app": "x"}
    assert UID_LABEL not in job.spec.template.metadata.labels


async def test_body_that_is_not_an_object_is_400(fake_kube: FakeKube, batch: Any) -> None:
    with pytest.raises(ApiException) as info:
        await batch.create_namespaced_job("default", [1, 2])
    assert info.value.status == 400


async def test_list_is_a_joblist_with_selectors_and_paging(fake_kube: FakeKube, batch: Any) -> None:
    for name in ("a", "b", "c"):
        fake_kube.create_job("default", job_manifest(name, labels={"team": "x" if name != "c" else "y"}))
    fake_kube.create_job("other", job_manifest("d"))
    body = await read_json(await batch.list_namespaced_job("default", _preload_content=False))
    assert (body["kind"], body["apiVersion"]) == ("JobList", "batch/v1")
    assert [j["metadata"]["name"] for j in body["items"]] == ["a", "b", "c"]
    assert "kind" not in body["items"][0]
    labelled = await batch.list_namespaced_job("default", label_selector="team=x")
    assert [j.metadata.name for j in labelled.items] == ["a", "b"]
    by_field = await batch.list_namespaced_job("default", field_selector="metadata.name=c")
    assert [j.metadata.name for j in by_field.items] == ["c"]
    none_done = await batch.list_namespaced_job("default", field_selector="status.successful=1")
    assert none_done.items == []
    first = await batch.list_namespaced_job("default", limit=2)
    assert [j.metadata.name for j in first.items] == ["a", "b"]
    assert first.metadata.remaining_item_count == 1
    rest = await batch.list_namespaced_job("default", limit=2, _continue=first.metadata._continue)
    assert [j.metadata.name for j in rest.items] == ["c"]
    everywhere = await batch.list_job_for_all_namespaces()
    assert [(j.metadata.namespace, j.metadata.name) for j in everywhere.items][-1] == ("other", "d")


async def test_unknown_field_selector_is_400(fake_kube: FakeKube, batch: Any) -> None:
    with pytest.raises(ApiException) as info:
        await batch.list_namespaced_job("default", field_selector="status.phase=Running")
    assert info.value.status == 400
    assert "field label not supported" in json.loads(info.value.body)["message"]


async def test_watch_replays_from_resource_version_and_bookmarks_batch(
    fake_kube: FakeKube, batch: Any
) -> None:
    listed = await batch.list_namespaced_job("default")
    fake_kube.create_job("default", job_manifest("w"))
    resp = await batch.list_namespaced_job(
        "default",
        watch=True,
        resource_version=listed.metadata.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
        _preload_content=False,
    )
    events = [json.loads(line) async for line in resp.content]
    assert events[0]["type"] == "ADDED"
    assert (events[0]["object"]["kind"], events[0]["object"]["apiVersion"]) == ("Job", "batch/v1")
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks
    assert bookmarks[0]["object"]["apiVersion"] == "batch/v1"
    assert bookmarks[0]["object"]["kind"] == "Job"


async def test_watch_from_compacted_version_is_410(fake_kube: FakeKube, batch: Any) -> None:
    fake_kube.create_job("default", job_manifest("old"))
    fake_kube.compact()
    resp = await batch.list_namespaced_job(
        "default", watch=True, resource_version="1", timeout_seconds=1, _preload_content=False
    )
    [event] = [json.loads(line) async for line in resp.content]
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")


async def test_typed_watch_stream_decodes_jobs(fake_kube: FakeKube, batch: Any) -> None:
    from kubernetes_asyncio import watch

    fake_kube.create_job("default", job_manifest("typed"))
    stream = watch.Watch().stream(batch.list_namespaced_job, "default", timeout_seconds=1)
    events = [event async for event in stream]
    assert events[0]["type"] == "ADDED"
    assert isinstance(events[0]["object"], client.V1Job)
    assert events[0]["object"].metadata.name == "typed"


async def _job_with_running_pods(fake_kube: FakeKube, core: Any, name: str, parallelism: int) -> str:
    job = fake_kube.create_job("default", job_manifest(name, parallelism=parallelism))
    uid = job["metadata"]["uid"]
    await watch_pods(core, f"{UID_LABEL}={uid}", lambda pods: len(pods) == parallelism)
    for pod in fake_kube.job_pods("default", name):
        fake_kube.start("default", pod["metadata"]["name"])
    return str(uid)


async def test_delete_background_removes_job_then_pods(fake_kube: FakeKube, batch: Any, core: Any) -> None:
    uid = await _job_with_running_pods(fake_kube, core, "bg", 2)
    resp = await batch.delete_namespaced_job(
        "bg", "default", propagation_policy="Background", _preload_content=False
    )
    body = await read_json(resp)
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "bg", "group": "batch", "kind": "jobs", "uid": uid},
    }
    assert "Warning" not in resp.headers
    assert fake_kube.get_job("default", "bg") is None
    await eventually(lambda: not fake_kube.list_pods("default"), what="the Job's pods deleted")


async def test_delete_foreground_keeps_job_until_pods_are_gone(
    fake_kube: FakeKube, batch: Any, core: Any
) -> None:
    fake_kube.deletion_delay = 1.0
    await _job_with_running_pods(fake_kube, core, "fg", 2)
    resp = await batch.delete_namespaced_job(
        "fg", "default", body=client.V1DeleteOptions(propagation_policy="Foreground"), _preload_content=False
    )
    body = await read_json(resp)
    assert body["kind"] == "Job"
    assert body["metadata"]["deletionTimestamp"]
    assert body["metadata"]["finalizers"] == ["foregroundDeletion"]
    await eventually(
        lambda: (
            (pods := fake_kube.list_pods("default"))
            and all("deletionTimestamp" in p["metadata"] for p in pods)
        ),
        what="pods terminating",
    )
    assert fake_kube.get_job("default", "fg") is not None  # its pods are still terminating
    await eventually(lambda: fake_kube.get_job("default", "fg") is None, what="job removed after its pods")
    assert fake_kube.list_pods("default") == []


async def test_delete_orphan_leaves_pods_without_owner(fake_kube: FakeKube, batch: Any, core: Any) -> None:
    await _job_with_running_pods(fake_kube, core, "or", 2)
    await batch.delete_namespaced_job("or", "default", propagation_policy="Orphan")
    await eventually(lambda: fake_kube.get_job("default", "or") is None, what="job removed")
    pods = fake_kube.list_pods("default")
    assert len(pods) == 2
    for pod in pods:
        assert "ownerReferences" not in pod["metadata"]
        assert "finalizers" not in pod["metadata"]
        assert "deletionTimestamp" not in pod["metadata"]
        assert pod["status"]["phase"] == "Running"


async def test_delete_without_policy_orphans_with_warning(fake_kube: FakeKube, batch: Any, core: Any) -> None:
    await _job_with_running_pods(fake_kube, core, "dflt", 1)
    resp = await batch.delete_namespaced_job("dflt", "default", _preload_content=False)
    assert resp.status == 200
    assert "child pods are preserved by default" in resp.headers["Warning"]
    await eventually(lambda: fake_kube.get_job("default", "dflt") is None, what="job removed")
    [pod] = fake_kube.list_pods("default")
    assert "ownerReferences" not in pod["metadata"]


@pytest.mark.parametrize(
    ("kwargs", "code", "fragment"),
    [
        ({"propagation_policy": "Sideways"}, 422, 'Unsupported value: "Sideways"'),
        ({"propagation_policy": "Orphan", "orphan_dependents": True}, 422, "cannot be both set"),
        ({"body": client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="other"))}, 409, "other"),
    ],
)
async def test_bad_delete_is_refused_and_keeps_job(
    fake_kube: FakeKube, batch: Any, kwargs: dict[str, Any], code: int, fragment: str
) -> None:
    fake_kube.create_job("default", job_manifest("keep"))
    with pytest.raises(ApiException) as info:
        await batch.delete_namespaced_job("keep", "default", **kwargs)
    assert info.value.status == code
    assert fragment in json.loads(info.value.body)["message"]
    assert fake_kube.get_job("default", "keep") is not None


async def test_delete_missing_is_404(fake_kube: FakeKube, batch: Any) -> None:
    with pytest.raises(ApiException) as info:
        await batch.delete_namespaced_job("gone", "default", propagation_policy="Background")
    assert info.value.status == 404


async def test_helpers_refuse_bad_input(fake_kube: FakeKube) -> None:
    with pytest.raises(ValueError, match="restartPolicy"):
        fake_kube.create_job("default", _invalid(spec__template__spec__restartPolicy="Always"))
    with pytest.raises(ValueError, match="propagation_policy"):
        fake_kube.delete_job("default", "x", "Sideways")
    with pytest.raises(KeyError, match="does not exist"):
        fake_kube.delete_job("default", "x")


async def test_request_log_names_jobs(fake_kube: FakeKube, batch: Any) -> None:
    await batch.create_namespaced_job("default", job_manifest("logged"))
    await batch.read_namespaced_job_status("logged", "default")
    await batch.list_namespaced_job("default")
    counts = fake_kube.request_counts()
    assert (counts[("create", "jobs")], counts[("get", "jobs")], counts[("list", "jobs")]) == (1, 1, 1)
    discovery = await read_json(await batch.get_api_resources(_preload_content=False))
    assert discovery["groupVersion"] == "batch/v1"
