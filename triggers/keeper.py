"""The keeper of the triggerer's finalizer: down, restart with backoff, up again; lines and metrics.

**Rule ("crash, don't hang" inside a triggerer): degrade and restart, never exit.** A finalizer
whose foundation failed tears itself down at once (every waiting caller gets an error, no hang).
The runtime is then *down*: every trigger is refused at once with the reason and takes the classic
path (a worker ends the task; nothing is lost). The keeper starts a new finalizer with backoff —
``FIRST_BACKOFF`` doubling, capped at ``backoff_cap(config)`` — until one starts. Each change of
state is one ERROR line in the triggerer's own log and the ``available`` gauge (1/0); each
recovery counts in ``restarts``. Missing parts or bad settings are permanent: no restart can help,
the triggerer serves its other triggers on (tasks go the classic way) and says so once.

The cap is also bounded by half of ``stale_threshold``: a triggerer whose finalizer went down
with hand-overs pending writes them at its restart, and an adopter elsewhere waits a full
``stale_threshold`` of reachable ledger before it adopts (``finalizer.admission``), so the
restart must come well inside that window.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finalizer.exceptions import ConfigurationError, FinalizerPartsMissingError
from triggers.log_queue import process_wide

if TYPE_CHECKING:
    from finalizer.config import FinalizerConfig
    from finalizer.service import Finalizer

log = logging.getLogger("triggers.runtime")  # the name operators grep for, as before the split

#: How often the keeper looks at the finalizer's health, seconds.
KEEPER_TICK = 0.5
#: The first wait before a restart attempt, seconds (doubling up to the cap): a first start that
#: failed (the ledger restarting) is tried again quickly.
FIRST_BACKOFF = 0.5
#: The cap until a configuration has been read (the first start failed before reading it).
DEFAULT_CAP = 15.0


def backoff_cap(config: FinalizerConfig) -> float:
    """``max(1, min(60, ledger_deadline, stale_threshold / 2))`` seconds."""
    return max(1.0, min(60.0, config.ledger_deadline, config.stale_threshold / 2))


def permanent(exc: BaseException) -> bool:
    """Restarting cannot fix bad settings or missing parts."""
    return isinstance(exc, ConfigurationError | FinalizerPartsMissingError)


def emit(level: int, message: str, *args: object) -> None:
    """To the triggerer's own log, even when called from a trigger (see ``log_queue.process_wide``)."""
    process_wide().run(functools.partial(log.log, level, message, *args, stacklevel=2))


@dataclass
class Down:
    """Why the finalizer is not running, since when, and when the keeper tries again."""

    reason: str
    since: float
    permanent: bool
    backoff: float
    next_attempt: float
    attempts: int = 0

    def describe(self) -> str:
        if self.permanent:
            return f"the kpo-finalizer is down ({self.reason}) and cannot recover without a triggerer restart"
        return (
            f"the kpo-finalizer is down for {time.monotonic() - self.since:.0f}s ({self.reason}); "
            f"it restarts by itself once it can ({self.attempts} attempt(s) so far)"
        )


class Keeper:
    """The up/down state of one runtime, and what each change logs and counts."""

    def __init__(self) -> None:
        self.down: Down | None = None
        self.restarts = 0
        self.cap = DEFAULT_CAP

    def went_down(self, why: BaseException | str) -> None:
        """The change to *down*: one ERROR line, the gauge at 0, the first attempt planned."""
        if self.down is not None:
            return
        reason = why if isinstance(why, str) else f"{type(why).__name__}: {why}"
        is_permanent = not isinstance(why, str) and permanent(why)
        now = time.monotonic()
        self.down = Down(reason, now, is_permanent, FIRST_BACKOFF, now + FIRST_BACKOFF)
        available(False)
        emit(
            logging.ERROR,
            "kpo-finalizer is DOWN (%s): tasks whose pods finish now take the classic path (a worker "
            "ends them); %s",
            reason,
            "it cannot recover without a triggerer restart"
            if is_permanent
            else f"restart attempts with backoff up to {self.cap:g}s",
        )

    def came_up(self) -> None:
        """The change back to *up*: one ERROR line (the pair of the DOWN one), gauge 1, restarts + 1."""
        down, self.down = self.down, None
        available(True)
        if down is None:
            return
        self.restarts += 1
        metrics().restarts.inc()
        emit(
            logging.ERROR,
            "kpo-finalizer is UP again after %.1fs down (restart %d, attempt %d): tasks are finished "
            "in the triggerer again",
            time.monotonic() - down.since,
            self.restarts,
            down.attempts,
        )

    def due(self) -> bool:
        """A restart attempt is due now (and counted as made)."""
        down = self.down
        if down is None or down.permanent or time.monotonic() < down.next_attempt:
            return False
        down.attempts += 1
        return True

    def attempt_failed(self, exc: BaseException) -> None:
        down = self.down
        assert down is not None
        if permanent(exc):
            down.permanent, down.reason = True, f"{type(exc).__name__}: {exc}"
            emit(logging.ERROR, "kpo-finalizer cannot recover (%s): no more restart attempts", down.reason)
            return
        down.backoff = min(self.cap, down.backoff * 2)
        down.next_attempt = time.monotonic() + down.backoff
        emit(
            logging.WARNING,
            "kpo-finalizer restart attempt %d failed (%s: %s); next in %.1fs",
            down.attempts,
            type(exc).__name__,
            exc,
            down.backoff,
        )


def dead(finalizer: Finalizer) -> str | None:
    """Why ``finalizer`` no longer runs (it failed, or its loop thread ended), or None."""
    failure = finalizer.failure
    if failure is not None:
        return f"{type(failure).__name__}: {failure}"
    health = finalizer.health()
    if not health.running and not health.draining:
        return "its loop thread stopped"
    return None


def metrics() -> Any:
    from finalizer.metrics import METRICS

    return METRICS


def available(up: bool) -> None:
    metrics().available.set(1 if up else 0)
