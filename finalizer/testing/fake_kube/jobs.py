"""batch/v1 Jobs in the fake: their store (watch, history, paging as pods have) and a manifest helper.

Jobs have their own resourceVersion sequence, as events do (a real server shares one etcd counter;
no client of a fake compares resourceVersions across kinds).
"""

from __future__ import annotations

from typing import Any

from finalizer.testing.fake_kube import job_spec, lifecycle
from finalizer.testing.fake_kube.store import ObjectStore
from finalizer.testing.fake_kube.wire import JSON

#: Fields the API lets Jobs be selected by (``pkg/apis/batch/v1`` field label conversion).
JOB_FIELDS = ("metadata.name", "metadata.namespace", "status.successful")


def job_fields(job: JSON) -> dict[str, str]:
    meta = job.get("metadata") or {}
    return {
        "metadata.name": str(meta.get("name") or ""),
        "metadata.namespace": str(meta.get("namespace") or ""),
        "status.successful": str((job.get("status") or {}).get("succeeded") or 0),
    }


class JobStore(ObjectStore):
    kind = "Job"
    api_version = "batch/v1"

    def fields_of(self, obj: JSON) -> dict[str, str]:
        return job_fields(obj)

    def add(self, namespace: str, manifest: JSON) -> JSON:
        return self.put(namespace, job_spec.admit(manifest, namespace, self.next_rv()))


def job_manifest(
    name: str,
    *,
    parallelism: int | None = None,
    completions: int | None = None,
    backoff_limit: int | None = None,
    active_deadline_seconds: int | None = None,
    completion_mode: str | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    with_xcom_sidecar: bool = True,
    ttl_seconds_after_finished: int | None = None,
) -> JSON:
    """A Job shaped like the one ``KubernetesJobOperator`` builds: a KPO pod as its template.

    ``annotations`` go on the pod template, where the auto-kubelet's ``fake-kube/…`` scripts are read.
    """
    pod = lifecycle.default_manifest(name, labels, with_xcom_sidecar, "base")
    template_meta: dict[str, Any] = {"labels": dict(labels or {})}
    if annotations:
        template_meta["annotations"] = dict(annotations)
    spec: JSON = {"template": {"metadata": template_meta, "spec": pod["spec"]}}
    for key, value in (
        ("parallelism", parallelism),
        ("completions", completions),
        ("backoffLimit", backoff_limit),
        ("activeDeadlineSeconds", active_deadline_seconds),
        ("completionMode", completion_mode),
        ("ttlSecondsAfterFinished", ttl_seconds_after_finished),
    ):
        if value is not None:
            spec[key] = value
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}
