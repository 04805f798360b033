"""PATCH of a Job (what ``KubernetesPatchJobOperator`` sends): mutable fields, refusals, suspend/resume."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from finalizer.testing import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from tests.fake_kube.job_helpers import watch_job, watch_pods
from tests.support.optional import require
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

UID_LABEL = "batch.kubernetes.io/controller-uid"


@pytest.fixture
async def batch(k8s_config: Any) -> AsyncIterator[Any]:
    async with client.ApiClient(k8s_config) as api:
        yield client.BatchV1Api(api)


def _suspended(job: dict[str, Any]) -> str | None:
    """The status of the Job's Suspended condition, if it has one."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Suspended":
            return str(condition["status"])
    return None


async def test_patch_labels_and_parallelism(fake_kube: FakeKube, batch: Any, core: Any) -> None:
    job = fake_kube.create_job("default", job_manifest("grow", parallelism=1, completions=3))
    selector = f"{UID_LABEL}={job['metadata']['uid']}"
    await watch_pods(core, selector, lambda pods: len(pods) == 1)
    patched = await batch.patch_namespaced_job(
        "grow", "default", {"metadata": {"labels": {"team": "x"}}, "spec": {"parallelism": 3}}
    )
    assert patched.metadata.labels["team"] == "x"
    assert patched.spec.parallelism == 3
    assert patched.metadata.generation == 2
    assert patched.metadata.uid == job["metadata"]["uid"]
    await watch_pods(core, selector, lambda pods: len(pods) == 3)
    relabelled = await batch.patch_namespaced_job("grow", "default", {"metadata": {"labels": {"team": "y"}}})
    assert relabelled.metadata.generation == 2  # metadata only: the spec's generation stays


@pytest.mark.parametrize(
    ("patch", "code", "fragment"),
    [
        (
            {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}},
            422,
            "spec.template: Invalid value",
        ),
        ({"spec": {"completions": 9}}, 422, "field is immutable"),
        ({"spec": {"parallelism": -1}}, 422, "must be greater than or equal to 0"),
        ({"metadata": {"resourceVersion": "1"}}, 409, "the object has been modified"),
        ({"metadata": {"uid": "other"}}, 422, "metadata.uid"),
    ],
)
async def test_refused_patch_changes_nothing(
    fake_kube: FakeKube, batch: Any, patch: dict[str, Any], code: int, fragment: str
) -> None:
    before = fake_kube.create_job("default", job_manifest("fixed"))
    with pytest.raises(ApiException) as info:
        await batch.patch_namespaced_job("fixed", "default", patch)
    assert info.value.status == code
    assert fragment in json.loads(info.value.body)["message"]
    after = fake_kube.get_job("default", "fixed")
    assert after is not None
    assert after["spec"] == before["spec"]


async def test_patch_refuses_json_patch_and_missing_jobs(fake_kube: FakeKube, batch: Any) -> None:
    fake_kube.create_job("default", job_manifest("typed"))
    with pytest.raises(ApiException) as info:
        await batch.patch_namespaced_job("typed", "default", [{"op": "replace", "path": "/spec/parallelism"}])
    assert info.value.status == 415
    with pytest.raises(ApiException) as missing:
        await batch.patch_namespaced_job("nope", "default", {"spec": {"parallelism": 2}})
    assert missing.value.status == 404


async def test_resume_starts_pods_and_suspend_deletes_them_uncounted(
    fake_kube: FakeKube, batch: Any, core: Any
) -> None:
    manifest = job_manifest("pause", parallelism=2, completions=2)
    manifest["spec"]["suspend"] = True
    job = fake_kube.create_job("default", manifest)
    selector = f"{UID_LABEL}={job['metadata']['uid']}"
    await watch_job(batch, "pause", lambda j: _suspended(j) == "True")
    assert fake_kube.job_pods("default", "pause") == []
    await batch.patch_namespaced_job("pause", "default", {"spec": {"suspend": False}})
    resumed = (await watch_job(batch, "pause", lambda j: _suspended(j) == "False"))[-1]
    condition = next(c for c in resumed["status"]["conditions"] if c["type"] == "Suspended")
    assert (condition["reason"], condition["message"]) == ("JobResumed", "Job resumed")
    assert resumed["status"]["startTime"]
    pods = await watch_pods(core, selector, lambda pods: len(pods) == 2)
    for name in pods:
        fake_kube.start("default", name)
    await batch.patch_namespaced_job("pause", "default", {"spec": {"suspend": True}})
    await eventually(lambda: not fake_kube.job_pods("default", "pause"), what="suspended pods deleted")
    final = (
        await watch_job(batch, "pause", lambda j: _suspended(j) == "True" and not j["status"].get("active"))
    )[-1]
    assert "failed" not in final["status"]  # pods a suspension deletes are no failures
    assert fake_kube.job_pods("default", "pause") == []  # and none replaces them


async def test_sync_hook_patch_namespaced_job(fake_kube: FakeKube, tmp_path: Path) -> None:
    hooks = require("airflow.providers.cncf.kubernetes.hooks.kubernetes")
    hook = hooks.KubernetesHook(config_file=str(fake_kube.write_kubeconfig(tmp_path / "kubeconfig")))
    fake_kube.create_job("default", job_manifest("sync-patched"))
    with anyio.fail_after(30):
        patched = await anyio.to_thread.run_sync(
            lambda: hook.patch_namespaced_job("sync-patched", "default", {"spec": {"suspend": True}})
        )
    assert patched.spec.suspend is True
