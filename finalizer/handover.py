"""Hand-overs to the worker path that the ledger has not recorded yet.

When a trigger takes the classic path (the finalizer is down, or a job could not finish), its job
must be marked handed over in the ledger so that no instance adopts it and touches the worker's
pod. That is exactly when the ledger may be unreachable, so the mark is kept here, process-wide,
until a finalizer writes it: at its start-up (before it adopts anything), before every adoption
round, and at once where the ledger answers. An adopter elsewhere that cannot see the mark asks
Airflow instead (``Admission``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the runtime holds one of these from a trigger's first run: keep imports light
    from finalizer.seams import ServiceLedger

log = logging.getLogger(__name__)


class PendingHandovers:
    """Job key → reason of each hand-over not yet in the ledger. Thread-safe (runner + finalizer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, str] = {}

    def add(self, key: str, reason: str) -> None:
        with self._lock:
            self._items.setdefault(key, reason)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def reason(self, key: str) -> str | None:
        with self._lock:
            return self._items.get(key)

    def snapshot(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._items.items())

    def written(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


async def flush(pending: PendingHandovers, ledger: ServiceLedger, keys: list[str] | None = None) -> int:
    """Write the pending hand-overs (or only ``keys``); a ledger error propagates (the rest stay)."""
    written = 0
    for key, reason in pending.snapshot():
        if keys is not None and key not in keys:
            continue
        await ledger.hand_over(key, reason)
        pending.written(key)
        written += 1
    if written:
        log.info("kpo-finalizer recorded %d hand-over(s) to the worker path in the ledger", written)
    return written
