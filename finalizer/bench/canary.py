"""Triggers of our own that ``bench triggerer`` runs beside the variant's triggers, in the same runner.

* ``LoopLagProbe`` never fires: it sleeps ``interval`` seconds in a loop and sends how late each
  wake-up was (one UDP datagram per tick, to the bench on 127.0.0.1). That is the trigger runner's
  event-loop lag as every trigger on that loop feels it, sampled ten times a second, in every
  phase (Airflow's own watchdog only logs blocks above its 0.2 s threshold).
* ``CanaryTrigger`` is "another kind" of trigger sharing the loop with the KPO triggers: it sleeps
  until a due time (during the burst), then fires a plain ``TriggerEvent`` carrying when it woke.
  Wake lateness is the runner's loop; the TI's ``scheduled_dttm`` minus the due time adds the
  supervisor's handling of the event (what a user of that trigger waits for).

UDP, not the supervisor channel: a send never blocks the loop it measures, and it adds nothing to
the supervisor whose load is part of what the bench measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

PROBE_CLASSPATH = "finalizer.bench.canary.LoopLagProbe"
CANARY_CLASSPATH = "finalizer.bench.canary.CanaryTrigger"


class LoopLagProbe(BaseTrigger):  # type: ignore[misc]
    """Report each tick's lateness (seconds) as ``b"<wall time> <lag>"`` to ``127.0.0.1:port``."""

    def __init__(self, port: int, interval: float = 0.1) -> None:
        super().__init__()
        self.port = int(port)
        self.interval = float(interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return PROBE_CLASSPATH, {"port": self.port, "interval": self.interval}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        target = ("127.0.0.1", self.port)
        try:
            while True:
                before = time.monotonic()
                await asyncio.sleep(self.interval)
                lag = time.monotonic() - before - self.interval
                # A full buffer or the bench gone: a lost sample, never a stall.
                with contextlib.suppress(OSError):
                    sock.sendto(f"{time.time():.6f} {lag:.6f}".encode(), target)
        finally:
            sock.close()
        yield TriggerEvent({})  # pragma: no cover - unreachable; makes run() an async generator


class CanaryTrigger(BaseTrigger):  # type: ignore[misc]
    """Sleep until ``due`` (epoch seconds), then fire ``{"due": due, "woke": <epoch seconds>}``."""

    def __init__(self, due: float) -> None:
        super().__init__()
        self.due = float(due)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CANARY_CLASSPATH, {"due": self.due}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        delay = self.due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield TriggerEvent({"due": self.due, "woke": time.time()})
