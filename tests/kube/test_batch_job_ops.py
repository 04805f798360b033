"""Job reads, deletes (uid precondition, each propagation policy) and the ``job`` XCom's shape."""

from __future__ import annotations

import datetime
import json
from typing import Any

import kubernetes
import pytest

from finalizer.exceptions import BatchJobNotFoundError, KubeRequestError, KubeTransientError
from finalizer.jobs import BatchJobRef, PropagationPolicy
from finalizer.kube import KubeCluster
from finalizer.kube.batch_jobs import rfc3339
from finalizer.testing import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.support.kube import NS
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


def create(fake: FakeKube, name: str, **manifest: object) -> BatchJobRef:
    job = fake.create_job(NS, job_manifest(name, **manifest))  # type: ignore[arg-type]
    return BatchJobRef(namespace=NS, name=name, uid=job["metadata"]["uid"])


async def test_read_checks_the_uid(fake: FakeKube, cluster: KubeCluster) -> None:
    ref = create(fake, "j", parallelism=2)
    job = await cluster.read_batch_job(ref)
    assert (job.uid, job.parallelism, job.terminal) == (ref.uid, 2, None)
    with pytest.raises(BatchJobNotFoundError, match="the name now has uid"):
        await cluster.read_batch_job(ref.model_copy(update={"uid": "an-older-uid"}))
    with pytest.raises(BatchJobNotFoundError, match="HTTP 404"):
        await cluster.read_batch_job(ref.model_copy(update={"name": "nope"}))


@pytest.mark.parametrize(
    ("policy", "pods_left"),
    [("Background", 0), ("Foreground", 0), ("Orphan", 2)],
)
async def test_delete_with_each_policy(
    fake: FakeKube, cluster: KubeCluster, policy: PropagationPolicy, pods_left: int
) -> None:
    ref = create(fake, "j", parallelism=2)
    await eventually(lambda: len(fake.job_pods(NS, "j")) == 2)
    assert await cluster.delete_batch_job(ref, policy) is True
    await eventually(lambda: fake.get_job(NS, "j") is None, 5)
    left = [p for p in fake.list_pods(NS) if "deletionTimestamp" not in p["metadata"]]
    assert len(left) == pods_left
    if policy == "Orphan":
        assert all("ownerReferences" not in p["metadata"] for p in left)
    delete = next(r for r in fake.requests if r.verb == "delete" and r.resource == "jobs")
    assert delete.status == 200
    # Gone now: a second delete says so, it does not raise.
    assert await cluster.delete_batch_job(ref, policy) is False


async def test_foreground_delete_waits_for_the_pods(fake: FakeKube, cluster: KubeCluster) -> None:
    fake.deletion_delay = 0.5  # the kubelet takes a while to stop the pods
    ref = create(fake, "j")
    await eventually(lambda: len(fake.job_pods(NS, "j")) == 1)
    fake.start(NS, fake.job_pods(NS, "j")[0]["metadata"]["name"])
    assert await cluster.delete_batch_job(ref, "Foreground", grace_period=1) is True
    job = await cluster.read_batch_job(ref)  # still there, being deleted, while its pod stops
    assert job.deleting
    assert await cluster.delete_batch_job(ref, "Foreground") is True  # already deleting: accepted
    await eventually(lambda: fake.get_job(NS, "j") is None, 5)


async def test_uid_precondition_spares_another_job(fake: FakeKube, cluster: KubeCluster) -> None:
    old = create(fake, "j")
    fake.delete_job(NS, "j", "Background")
    await eventually(lambda: fake.get_job(NS, "j") is None)
    new = create(fake, "j")
    assert await cluster.delete_batch_job(old, "Background") is False
    assert [r.status for r in fake.requests if r.verb == "delete" and r.resource == "jobs"] == [409]
    assert (fake.get_job(NS, "j") or {})["metadata"]["uid"] == new.uid


async def test_delete_errors_are_translated(fake: FakeKube, cluster: KubeCluster) -> None:
    ref = create(fake, "j")
    fake.faults.add("DELETE", r"/jobs/j", status=503, retry_after=2, times=1)
    with pytest.raises(KubeTransientError) as transient:
        await cluster.delete_batch_job(ref, "Background")
    assert transient.value.retry_after == 2
    fake.faults.add("DELETE", r"/jobs/j", status=403, times=1)
    with pytest.raises(KubeRequestError):
        await cluster.delete_batch_job(ref, "Background")
    assert fake.get_job(NS, "j") is not None


class _Response:
    """What the sync client's ``ApiClient.deserialize`` reads from a response."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


def upstream_to_dict(raw: dict[str, Any]) -> dict[str, Any]:
    """The provider's view: the sync ``kubernetes`` client's ``V1Job.to_dict()`` of the same JSON."""
    api = kubernetes.client.ApiClient()
    try:
        data: dict[str, Any] = api.deserialize(_Response(raw), "V1Job").to_dict()
        return data
    finally:
        api.close()


def strings_for_datetimes(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {k: strings_for_datetimes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strings_for_datetimes(v) for v in value]
    return value


async def test_job_dict_is_upstreams_to_dict_with_rfc3339_strings(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    """A completed Indexed Job and a failed one: our dict == the sync client's (the operator's
    non-deferrable path) and the async client's (its trigger's), datetimes as text."""
    fake.auto_kubelet(start_delay=0.01, run_seconds=0.02)
    fake.job_backoff_seconds = 0.0
    refs = [
        create(fake, "ok", parallelism=2, completions=2, completion_mode="Indexed", with_xcom_sidecar=False),
        create(
            fake, "bad", backoff_limit=1, with_xcom_sidecar=False, annotations={"fake-kube/exit-code": "3"}
        ),
    ]
    for ref in refs:
        async with cluster.watch_batch_job(ref) as sub:
            job = await sub.wait(lambda j: j.terminal is not None, timeout=10)
        assert job is not None
        ours = cluster.batch_job_dict(job)
        theirs = upstream_to_dict(job.raw)
        assert ours == strings_for_datetimes(theirs)
        assert isinstance(theirs["status"]["start_time"], datetime.datetime)
        assert ours["status"]["start_time"] == job.raw["status"]["startTime"]  # the API's own text
        assert ours["metadata"]["uid"] == ref.uid
        assert "api_version" in ours
        assert "apiVersion" not in ours
        json.dumps(ours, allow_nan=False)  # JSON-safe
    # Upstream's deferrable path: KubernetesJobTrigger's AsyncKubernetesHook reads the status with
    # kubernetes_asyncio (read_namespaced_job_status, preloaded) and sends ``job.to_dict()``.
    for ref in refs:
        typed = await cluster.batch.read_namespaced_job_status(ref.name, NS)
        ours = cluster.batch_job_dict(await cluster.read_batch_job(ref))
        assert ours == strings_for_datetimes(typed.to_dict())
    ok = cluster.batch_job_dict(await cluster.read_batch_job(refs[0]))
    assert ok["spec"]["completion_mode"] == "Indexed"
    assert [c["type"] for c in ok["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    bad = cluster.batch_job_dict(await cluster.read_batch_job(refs[1]))
    assert [c["reason"] for c in bad["status"]["conditions"]][-1] == "BackoffLimitExceeded"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime.datetime(2026, 12, 3, 8, 50, tzinfo=datetime.UTC), "2026-12-03T08:50:00Z"),
        (
            datetime.datetime(2026, 12, 3, 9, 50, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
            "2026-12-03T08:50:00Z",
        ),
        (
            datetime.datetime(2026, 12, 3, 8, 50, 0, 120000, tzinfo=datetime.UTC),
            "2026-12-03T08:50:00.120000Z",
        ),
        (datetime.datetime(2026, 12, 3, 8, 50), "2026-12-03T08:50:00Z"),
    ],
)
def test_rfc3339(moment: datetime.datetime, text: str) -> None:
    assert rfc3339(moment) == text
