"""The service's upkeep on its own loop: heartbeat, loop-lag probe, payload retention, health.

Each is a small forever-loop the ``Finalizer`` starts in its task group; kept here so the
service module holds only job flow (submit, join, adopt, slots, drain).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import anyio

from finalizer import handover
from finalizer.config import FinalizerConfig
from finalizer.exceptions import LedgerError, LedgerUnavailableError
from finalizer.handover import PendingHandovers
from finalizer.seams import ServiceLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Health:
    """A snapshot for probes and metrics."""

    running: bool
    draining: bool
    failure: str | None
    #: Jobs finished waiting for their pod, waiting for a concurrency slot.
    queue_depth: int
    #: Jobs holding a concurrency slot (actively finalizing).
    in_flight: int
    #: Jobs still waiting for their pod to complete.
    watching: int
    #: Latest and worst measured loop lag, seconds.
    loop_lag: float
    loop_lag_max: float
    jobs_done: int
    #: ``uvloop`` or ``asyncio`` (``FinalizerConfig.event_loop``).
    event_loop: str = "asyncio"


@dataclass(slots=True)
class Lag:
    """Loop lag as measured by ``measure_lag`` (seconds): the latest tick and the worst one."""

    last: float = 0.0
    worst: float = 0.0


class Reachability:
    """Since when the ledger has answered this instance without a failure in between.

    The adopter's rule (``Admission``) reads it: it adopts only once the ledger has been reachable
    to it for a full ``stale_threshold``. The heartbeat and the adoption rounds report to it.
    """

    def __init__(self) -> None:
        self._since: float | None = time.monotonic()  # the instance's start: the ledger just answered

    def ok(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def failed(self) -> None:
        self._since = None

    def steady_for(self) -> float:
        """Seconds of unbroken reachability (0 right after a failure)."""
        return 0.0 if self._since is None else time.monotonic() - self._since


async def measure_lag(interval: float, lag: Lag) -> None:
    """A periodic tick: how late it wakes up is how long the loop was blocked."""
    while True:
        started = time.monotonic()
        await anyio.sleep(interval)
        lag.last = max(0.0, time.monotonic() - started - interval)
        lag.worst = max(lag.worst, lag.last)


async def heartbeat(
    ledger: ServiceLedger,
    instance_id: str,
    config: FinalizerConfig,
    fail: Callable[[BaseException], None],
    *,
    handovers: PendingHandovers | None = None,
    reach: Reachability | None = None,
) -> None:
    """Keep our instance row fresh; past ``ledger_deadline`` without one, fail loudly (raises).

    Pending hand-overs are written BEFORE each heartbeat: a heartbeat this instance wrote proves
    that every hand-over it had pending then is in the ledger (the adopter's rule relies on it).
    """
    interval, deadline = config.heartbeat_interval, config.ledger_deadline
    last_ok = time.monotonic()
    while True:
        await anyio.sleep(interval)
        left = deadline - (time.monotonic() - last_ok)
        try:
            with anyio.fail_after(max(left, 0.01)):
                if handovers is not None:
                    await handover.flush(handovers, ledger)
                await ledger.heartbeat(instance_id)
            last_ok = time.monotonic()
            if reach is not None:
                reach.ok()
        except (LedgerError, TimeoutError, OSError) as exc:
            if reach is not None:
                reach.failed()
            if time.monotonic() - last_ok >= deadline:
                failure = LedgerUnavailableError(
                    f"no ledger heartbeat for {deadline:g}s (ledger_deadline): {exc!r}"
                )
                fail(failure)
                raise failure from exc
            log.warning("kpo-finalizer heartbeat failed (%s); retrying", type(exc).__name__)


async def purge_payloads(ledger: ServiceLedger, config: FinalizerConfig) -> None:
    """Payloads can hold secrets: drop the ones already pushed after ``payload_retention``."""
    retention = timedelta(seconds=config.payload_retention)
    while True:
        await anyio.sleep(config.maintenance_interval)
        try:
            purged = await ledger.purge_payloads(retention)
        except LedgerError as exc:
            log.warning("kpo-finalizer payload purge failed (%s); will retry", type(exc).__name__)
            continue
        if purged:
            log.info("kpo-finalizer purged %d XCom payload(s) past retention", purged)
