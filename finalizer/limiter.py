"""Bounded concurrency per cluster: the slot a job holds while it actively finalizes.

Waiting for a pod to complete costs nothing and holds no slot; reading, pushing and deleting do.
The limiter counts both sides of the gate (``queued``: jobs whose pod completed, waiting for a
slot; ``in_flight``: jobs holding one) and keeps the ``queue_depth`` and ``in_flight`` gauges
current on every change, so health and metrics say the same thing. It also knows which jobs hold
a slot: ``drain`` gives those time to finish and parks the others at once.

The pipeline gets this object (the ``finalizer.seams.Slots`` seam), not a callback into the
service that runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from finalizer.jobs import JobSpec
from finalizer.metrics import METRICS, FinalizerMetrics


class ClusterLimiter:
    """``per_cluster`` active jobs at once on each cluster (by ``ClusterRef.key``)."""

    def __init__(self, per_cluster: int, metrics: FinalizerMetrics = METRICS) -> None:
        self._per_cluster = per_cluster
        self._metrics = metrics
        self._slots: dict[str, anyio.Semaphore] = {}
        self._active: set[str] = set()
        self.queued = 0

    @property
    def in_flight(self) -> int:
        """Jobs holding a slot now."""
        return len(self._active)

    def holds_slot(self, key: str) -> bool:
        """Job ``key`` is actively finalizing (not waiting for its pod or for a slot)."""
        return key in self._active

    @asynccontextmanager
    async def slot(self, spec: JobSpec) -> AsyncIterator[None]:
        """Hold one of ``spec``'s cluster's slots for the block."""
        sem = self._slots.get(spec.cluster.key)
        if sem is None:
            sem = self._slots[spec.cluster.key] = anyio.Semaphore(self._per_cluster)
        self._add_queued(+1)
        try:
            await sem.acquire()
        finally:
            self._add_queued(-1)
        self._active.add(spec.key)
        self._metrics.in_flight.set(len(self._active))
        try:
            yield
        finally:
            self._active.discard(spec.key)
            self._metrics.in_flight.set(len(self._active))
            sem.release()

    def _add_queued(self, delta: int) -> None:
        self.queued += delta
        self._metrics.queue_depth.set(self.queued)
