"""One shared LIST+WATCH per (namespace, label selector) serving any number of pods, or Jobs.

``KubernetesPodTrigger`` polls every pod on its own; here one watch connection serves every
subscribed pod, identified by name AND uid. Level-based: a LIST on (re)start gives the
whole truth, then a WATCH from its resourceVersion (bookmarks keep it fresh; an ``ERROR``
410 means re-LIST). Subscribers see the latest state, not a queue of events, so a slow
subscriber costs no memory and a missed event cannot hide a finished pod.

The same holds for batch/v1 Jobs (``JobWatcher``: one watch per namespace), and for a Job's
pods, followed by owner uid on the namespace's pod stream (``PodWatcher.members``), so Job
pods and KPO pods of a namespace share one connection.

The loop itself lives in :mod:`finalizer.kube.stream`, the per-object state in
:mod:`finalizer.kube.subscription` and :mod:`finalizer.kube.members`.

Who decides an object is gone: a LIST sent *after* a subscriber registered (absent, or the
name now has another uid), a DELETED event with its uid, an event for another uid under
the name newer than what we know, or a GET answering 404 / another uid. A subscriber that
joins a running watch gets one GET (a member subscriber: one LIST by its label), since the
watch only reports changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Generic

from kubernetes_asyncio.client import BatchV1Api, CoreV1Api

from finalizer.batch_job import BatchJobView
from finalizer.exceptions import FinalizerUnavailableError
from finalizer.kube.batch_jobs import BatchJobOps
from finalizer.kube.config import KubeSettings
from finalizer.kube.members import MemberSubscription
from finalizer.kube.pods import PodOps
from finalizer.kube.resource import Resource, job_resource, pod_resource
from finalizer.kube.stream import StreamStats, WatchStream, unwanted_event
from finalizer.kube.subscription import ObjectSubscription, Subscription, V, rv_newer
from finalizer.pod import PodView

__all__ = [
    "JobWatcher",
    "MemberSubscription",
    "PodWatcher",
    "StreamStats",
    "Subscription",
    "rv_newer",
    "unwanted_event",
]

StreamKey = tuple[str, str | None]


class Watcher(Generic[V]):
    """Every shared watch of one resource on one cluster. ``subscribe`` is the whole API."""

    def __init__(self, resource: Resource[V], settings: KubeSettings, limiter: asyncio.Semaphore) -> None:
        self._resource = resource
        self._settings = settings
        self._limiter = limiter
        self._streams: dict[StreamKey, WatchStream[V]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    def _stream(self, key: StreamKey) -> WatchStream[V]:
        if self._closed:
            raise FinalizerUnavailableError(f"the {self._resource.noun} watcher is closed")
        stream = self._streams.get(key)
        if stream is None:
            stream = WatchStream(self._resource, self._settings, self._limiter, key[0], key[1])
            self._streams[key] = stream
        return stream

    def _release(self, key: StreamKey, stream: WatchStream[V]) -> None:
        """Stop the stream once its last subscriber left."""
        if stream.empty and self._streams.get(key) is stream:
            del self._streams[key]
            for task in stream.stop():
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, namespace: str, name: str, uid: str, label_selector: str | None = None
    ) -> AsyncIterator[ObjectSubscription[V]]:
        """Follow ``namespace/name`` with ``uid``; the watch stops with its last subscriber."""
        key = (namespace, label_selector or None)
        stream = self._stream(key)
        sub = stream.add(name, uid)
        try:
            yield sub
        finally:
            stream.remove(sub)
            self._release(key, stream)

    def stats(self) -> dict[str, StreamStats]:
        """Per-stream counters, keyed ``namespace`` or ``namespace?selector``."""
        return {ns + (f"?{sel}" if sel else ""): s.stats for (ns, sel), s in self._streams.items()}

    @property
    def subscribed(self) -> int:
        """Subscriptions by name (member subscriptions are counted by ``PodWatcher.member_sets``)."""
        return sum(len(subs) for s in self._streams.values() for subs in s.subs.values())

    async def aclose(self) -> None:
        """Stop every watch; waiting subscribers then wait in vain, so close only at shutdown."""
        self._closed = True
        tasks = [t for s in self._streams.values() for t in s.stop()] + list(self._stopping)
        self._streams.clear()
        for sub_task in tasks:
            sub_task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class PodWatcher(Watcher[PodView]):
    """Every shared pod watch of one cluster: pods by name + uid, and a Job's pods by owner."""

    def __init__(
        self, core: CoreV1Api, pods: PodOps, settings: KubeSettings, limiter: asyncio.Semaphore
    ) -> None:
        super().__init__(pod_resource(core, pods), settings, limiter)

    @contextlib.asynccontextmanager
    async def members(self, namespace: str, owner: str) -> AsyncIterator[MemberSubscription]:
        """Follow the pods of the Job with uid ``owner`` on the namespace's (selector-less) stream."""
        key = (namespace, None)
        stream = self._stream(key)
        sub = stream.add_members(owner)
        try:
            yield sub
        finally:
            stream.remove(sub)
            self._release(key, stream)

    @property
    def member_sets(self) -> int:
        return sum(len(subs) for s in self._streams.values() for subs in s.owners.values())


class JobWatcher(Watcher[BatchJobView]):
    """Every shared batch/v1 Job watch of one cluster (one per namespace)."""

    def __init__(
        self, batch: BatchV1Api, jobs: BatchJobOps, settings: KubeSettings, limiter: asyncio.Semaphore
    ) -> None:
        super().__init__(job_resource(batch, jobs), settings, limiter)
