"""What ``FinalizingJobTrigger.on_kill`` deletes with the provider's own (sync) client.

Upstream's ``KubernetesJobOperator.on_kill`` deletes the Job with ``on_kill_propagation_policy``
and then its monitoring pods unless ``on_kill_action`` is ``keep_pod``. Here the Job goes through
the finalizer where one runs (its shared client); these calls delete it where none runs, always
with the Job's uid as precondition, and delete its pods, found by their ``controller-uid`` label
(with ``Orphan`` the garbage collector leaves them). Blocking: run in a thread.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

from finalizer.jobs import BatchJobRef


def delete_blocking(
    hook: KubernetesHook, job: BatchJobRef, grace: int | None, keep_pods: bool, deleted: bool | None
) -> str:
    """Delete the Job unless the finalizer did (``deleted``: True, or False if it was gone), then
    its pods unless ``keep_pods``; says what was done, for the log."""
    by = "by the finalizer"
    if deleted is None:
        deleted, by = delete_job(hook, job, grace), "by the provider's client"
    gone = "" if deleted else "already gone, "
    done = f"({gone}uid {job.uid}, propagationPolicy {job.on_kill_propagation_policy}, {by})"
    if keep_pods:
        return f"{done}; its pods kept (on_kill_action keep_pod)"
    return f"{done}; {delete_pods(hook, job, grace)} pod(s) deleted"


def delete_job(hook: KubernetesHook, job: BatchJobRef, grace: int | None) -> bool:
    """The Job, uid precondition and ``on_kill_propagation_policy``; False if it was gone."""
    kwargs: dict[str, Any] = {"propagation_policy": job.on_kill_propagation_policy}
    if grace is not None:
        kwargs["grace_period_seconds"] = grace
    try:
        hook.batch_v1_client.delete_namespaced_job(
            name=job.name, namespace=job.namespace, body={"preconditions": {"uid": job.uid}}, **kwargs
        )
    except Exception as exc:
        if getattr(exc, "status", None) != 404:
            raise
        return False
    return True


def delete_pods(hook: KubernetesHook, job: BatchJobRef, grace: int | None) -> int:
    """The Job's pods by ``controller-uid``, each with its listed uid as precondition, so a pod
    that took the name since the LIST is not touched (409) and one already gone is fine (404);
    how many were listed."""
    core = hook.core_v1_client
    pods = core.list_namespaced_pod(namespace=job.namespace, label_selector=job.selector).items
    for pod in pods:
        try:
            core.delete_namespaced_pod(
                name=pod.metadata.name,
                namespace=job.namespace,
                grace_period_seconds=grace,
                body={"preconditions": {"uid": pod.metadata.uid}},
            )
        except Exception as exc:
            if getattr(exc, "status", None) not in (404, 409):
                raise
    return len(pods)
