"""Unary pod operations: read, delete (uid precondition), label, termination message, log tail.

Every call goes out with ``_preload_content=False`` (raw JSON, no ``V1Pod``), a
``(connect, read)`` timeout and a slot of the cluster's semaphore; errors come back as
:mod:`finalizer.exceptions` via :mod:`finalizer.kube.errors`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio.client import CoreV1Api

from finalizer.exceptions import PodNotFoundError
from finalizer.kube.config import KubeSettings
from finalizer.kube.responses import RawCall, bounded_call, parse_object
from finalizer.pod import JSON, PodView

#: The provider's label for a kept pod, so a retried KPO does not re-attach to it.
ALREADY_CHECKED_LABEL = "already_checked"
#: Largest pod JSON we accept from a GET (a pod is at most ~1.5 MiB in etcd).
MAX_POD_BYTES = 4 * 1024 * 1024


def termination_message(pod: PodView, container: str = "base") -> str | None:
    """The container's ``terminated.message`` (its ``terminationMessagePath`` content), if any."""
    status = pod.container(container)
    if status is None or status.state != "terminated":
        return None
    return status.message


class PodOps:
    """Pod reads and writes against one cluster."""

    def __init__(self, core: CoreV1Api, settings: KubeSettings, limiter: asyncio.Semaphore) -> None:
        self._core = core
        self._settings = settings
        self._limiter = limiter

    async def _raw(
        self, what: str, call: RawCall, *args: Any, max_bytes: int, truncate: bool = False, **kwargs: Any
    ) -> bytes:
        """One bounded call; the body as bytes, at most ``max_bytes`` of it."""
        return await bounded_call(
            self._limiter,
            self._settings.request_timeout,
            what,
            call,
            *args,
            max_bytes=max_bytes,
            truncate=truncate,
            **kwargs,
        )

    async def _json(self, what: str, call: RawCall, *args: Any, **kwargs: Any) -> JSON:
        body = await self._raw(what, call, *args, max_bytes=MAX_POD_BYTES, **kwargs)
        return parse_object(body, what=what)

    async def read_pod(self, namespace: str, name: str) -> PodView:
        """The pod as the API holds it now; ``PodNotFoundError`` when it is gone."""
        what = f"read pod {namespace}/{name}"
        return PodView(await self._json(what, self._core.read_namespaced_pod, name, namespace))

    async def read_pod_by_uid(self, namespace: str, name: str, uid: str) -> PodView:
        """Like :meth:`read_pod`, but a different pod under that name counts as gone."""
        pod = await self.read_pod(namespace, name)
        if pod.uid != uid:
            raise PodNotFoundError(
                f"pod {namespace}/{name} uid {uid} is gone (the name now has uid {pod.uid})"
            )
        return pod

    async def delete_pod(
        self, namespace: str, name: str, uid: str, grace_period_seconds: int | None = None
    ) -> bool:
        """Delete exactly this pod (uid precondition). False when it was already gone.

        404 counts as done: aiohttp re-sends a DELETE once after a reset connection, so
        a delete that succeeded can come back 404. 409 (another pod now holds the name)
        raises ``PodConflictError``: that pod is not ours to delete.
        """
        body: JSON = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        what = f"delete pod {namespace}/{name}"
        try:
            await self._json(what, self._core.delete_namespaced_pod, name, namespace, body=body)
        except PodNotFoundError:
            return False
        return True

    async def label_checked(self, namespace: str, name: str, uid: str) -> PodView:
        """Label a kept pod ``already_checked=True`` (merge patch, guarded by the uid).

        A pod that took the name since refuses the patch (the uid is immutable: 422 Invalid on the
        real API) and we get ``KubeRequestError``: that pod is not ours to label.
        """
        patch = {"metadata": {"uid": uid, "labels": {ALREADY_CHECKED_LABEL: "True"}}}
        what = f"label pod {namespace}/{name}"
        return PodView(
            await self._json(
                what,
                self._core.patch_namespaced_pod,
                name,
                namespace,
                patch,
                _content_type="application/merge-patch+json",
            )
        )

    async def log_tail(
        self,
        namespace: str,
        name: str,
        container: str = "base",
        *,
        tail_lines: int = 50,
        limit_bytes: int = 16384,
    ) -> str:
        """The container's last ``tail_lines`` log lines, at most ``limit_bytes``, decoded leniently."""
        if tail_lines <= 0 or limit_bytes <= 0:
            return ""
        what = f"read log of {namespace}/{name}[{container}]"
        body = await self._raw(
            what,
            self._core.read_namespaced_pod_log,
            name,
            namespace,
            container=container,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
            max_bytes=limit_bytes,
            truncate=True,
        )
        return body.decode("utf-8", "replace")
