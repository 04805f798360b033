"""One shared LIST+WATCH per (namespace, label selector) serving any number of pods.

``KubernetesPodTrigger`` polls every pod on its own; here one watch connection serves every
subscribed pod, identified by name AND uid. Level-based: a LIST on (re)start gives the
whole truth, then a WATCH from its resourceVersion (bookmarks keep it fresh; an ``ERROR``
410 means re-LIST). Subscribers see the latest state, not a queue of events, so a slow
subscriber costs no memory and a missed event cannot hide a finished pod.

The loop itself lives in :mod:`finalizer.kube.stream`, the per-pod state in
:mod:`finalizer.kube.subscription`.

Who decides a pod is gone: a LIST sent *after* a subscriber registered (absent, or the
name now has another uid), a DELETED event with its uid, an event for another uid under
the name newer than what we know, or a GET answering 404 / another uid. A subscriber that
joins a running watch gets one GET, since the watch only reports changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from kubernetes_asyncio.client import CoreV1Api

from finalizer.exceptions import FinalizerUnavailableError
from finalizer.kube.config import KubeSettings
from finalizer.kube.pods import PodOps
from finalizer.kube.stream import StreamStats, WatchStream, unwanted_event
from finalizer.kube.subscription import Subscription, rv_newer

__all__ = ["PodWatcher", "StreamStats", "Subscription", "rv_newer", "unwanted_event"]


class PodWatcher:
    """Every shared watch of one cluster. ``subscribe`` is the whole API."""

    def __init__(
        self, core: CoreV1Api, pods: PodOps, settings: KubeSettings, limiter: asyncio.Semaphore
    ) -> None:
        self._core = core
        self._pods = pods
        self._settings = settings
        self._limiter = limiter
        self._streams: dict[tuple[str, str | None], WatchStream] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.asynccontextmanager
    async def subscribe(
        self, namespace: str, name: str, uid: str, label_selector: str | None = None
    ) -> AsyncIterator[Subscription]:
        """Follow pod ``namespace/name`` with ``uid``; the watch stops with its last subscriber."""
        if self._closed:
            raise FinalizerUnavailableError("the pod watcher is closed")
        key = (namespace, label_selector or None)
        stream = self._streams.get(key)
        if stream is None:
            stream = WatchStream(
                self._core, self._pods, self._settings, self._limiter, namespace, label_selector or None
            )
            self._streams[key] = stream
        sub = stream.add(name, uid)
        try:
            yield sub
        finally:
            stream.remove(sub)
            if not stream.subs and self._streams.get(key) is stream:
                del self._streams[key]
                for task in stream.stop():
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)

    def stats(self) -> dict[str, StreamStats]:
        """Per-stream counters, keyed ``namespace`` or ``namespace?selector``."""
        return {ns + (f"?{sel}" if sel else ""): s.stats for (ns, sel), s in self._streams.items()}

    @property
    def subscribed(self) -> int:
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
