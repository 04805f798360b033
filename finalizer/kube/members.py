"""A batch/v1 Job's pods on the shared namespace pod watch: a subscription by owner uid.

The Job controller labels every pod it creates with ``batch.kubernetes.io/controller-uid`` (and,
before Kubernetes 1.27 only, ``controller-uid``) = the Job's uid. Following the Job's pods by
that label, not by the names the worker saw, also finds the pods created later (backoffLimit
retries, ``completions > parallelism``). Level-based like ``Subscription``: the latest state of
each member by uid, and a change counter instead of a queue of events
(``finalizer.seams.MemberWatch``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType

from finalizer.exceptions import FinalizerError
from finalizer.kube.subscription import rv_newer
from finalizer.pod import JSON, PodView

#: The labels naming a pod's Job, newest first (the legacy one is accepted on older clusters).
OWNER_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")


def owner_uid(obj: JSON) -> str | None:
    """The uid of the Job that created this pod (its controller-uid label), if any."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key in OWNER_LABELS:
        value = labels.get(key)
        if value:
            return str(value)
    return None


class MemberSubscription:
    """Every pod of one Job, by uid: ``members`` (latest state), ``gone`` (last state)."""

    def __init__(self, namespace: str, owner: str, seq: int) -> None:
        self.namespace = namespace
        self.owner = owner
        self.seq = seq
        self._members: dict[str, PodView] = {}
        self._gone: dict[str, PodView] = {}
        self._known = False
        self._error: FinalizerError | None = None
        self._version = 0
        self._seen = 0
        self._changed = asyncio.Event()
        self._resolver: asyncio.Task[None] | None = None

    @property
    def selector(self) -> str:
        return f"{OWNER_LABELS[0]}={self.owner}"

    @property
    def known(self) -> bool:
        return self._known

    @property
    def members(self) -> Mapping[str, PodView]:
        return MappingProxyType(self._members)

    @property
    def gone(self) -> Mapping[str, PodView]:
        return MappingProxyType(self._gone)

    @property
    def error(self) -> FinalizerError | None:
        """Why the watch cannot serve these pods right now (cleared when it recovers)."""
        return self._error

    async def changed(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - the seam's signature
        """Return once anything changed since the previous return (or the subscription's start).

        A change made while the caller looked at ``members`` is not lost: the next call returns
        at once. One consumer per subscription (each ``watch_members`` context is its own).
        Raises ``TimeoutError``, and the watch's terminal error (e.g. 403) while it lasts.
        """
        async with asyncio.timeout(timeout):
            while self._version == self._seen:
                if self._error is not None:
                    raise self._error
                self._changed.clear()
                await self._changed.wait()
        self._seen = self._version

    # --- fed by the stream -----------------------------------------------------------------
    def _bump(self) -> None:
        self._version += 1
        self._changed.set()

    def _observe(self, pod: PodView) -> None:
        """A state of one of our pods (ADDED, MODIFIED, or an item of a LIST)."""
        if pod.uid in self._gone:
            return
        self._error = None
        old = self._members.get(pod.uid)
        if old is None or rv_newer(pod.resource_version, old.resource_version):
            self._members[pod.uid] = pod
            self._bump()

    def _deleted(self, pod: PodView) -> None:
        """A DELETED event: the pod is gone for good, with this last state."""
        if pod.uid in self._gone:
            return
        self._members.pop(pod.uid, None)
        self._gone[pod.uid] = pod
        self._bump()

    def _listed(self, pods: list[PodView], list_rv: str | None) -> None:
        """A LIST sent after we registered: the whole truth at ``list_rv``.

        A member it lacks is gone, unless a watch event newer than the LIST already showed it
        (a resolve LIST runs beside the watch; ``list_rv`` None: nothing is newer).
        """
        listed = {pod.uid for pod in pods}
        for pod in pods:
            self._observe(pod)
        for uid, pod in list(self._members.items()):
            if uid not in listed and not (list_rv and rv_newer(pod.resource_version, list_rv)):
                self._deleted(pod)
        self._error = None
        if not self._known:
            self._known = True
            self._bump()

    def _fail(self, error: FinalizerError) -> None:
        self._error = error
        self._changed.set()
