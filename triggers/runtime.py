"""The finalizer inside ``airflow triggerer``: the process's one ``Finalizer``, and its lifetime.

**Lifetime rule.** One finalizer per trigger-runner event loop — and a runner process has one
loop, so one per process. The loop's first ``FinalizingPodTrigger`` starts it; a guard task on
that loop drains it when the loop ends (``asyncio.run`` cancels every remaining task at exit;
the guard's ``finally`` runs while the loop still serves the XCom calls in-flight jobs make). A
new loop in the same process (tests) first drains the previous loop's finalizer, whose XCom store
is bound to a loop that is gone. ``_RUNTIME`` below is the only process-wide state: the
``Finalizer`` class itself keeps none (``Finalizer.launch`` hands its caller the instance).

The XCom store is created on the runner's loop (``XCom.aset`` must run there) and the settings
come from Airflow's ``[kpo_finalizer]`` section (``triggers.settings``). Triggers only ``submit``
a ``JobSpec`` and await its ``Outcome``; they never block the runner's loop.

The first ``get`` in a runner also starts a read-only warm-up of the supervisor channel
(``triggers.warmup``), alongside the finalizer's start-up: Airflow builds its in-process Execution
API on the first supervisor request, and that cost should not land on the first finished pod.

**Recovery** is the keeper's (``triggers.keeper``): a finalizer whose foundation failed is
replaced with backoff; while down, triggers are refused at once and take the classic path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from finalizer.exceptions import ConfigurationError, FinalizerPartsMissingError, FinalizerUnavailableError
from finalizer.jobs import JobSpec, Outcome, TaskInstanceRef
from triggers import keeper, warmup
from triggers.keeper import Down, Keeper
from triggers.log_queue import OffThreadLogs, process_wide
from triggers.settings import read_options

if TYPE_CHECKING:  # imported when the first trigger starts it: DAG parsing in workers stays light
    from finalizer.config import FinalizerConfig
    from finalizer.handover import PendingHandovers
    from finalizer.service import Finalizer

log = logging.getLogger(__name__)


class _Runtime:
    """The process's finalizer, its XCom store, the channel warm-up and the guard that drains it."""

    def __init__(self, probe_for: Callable[[TaskInstanceRef], warmup.Probe] = warmup.dag_run_probe) -> None:
        self.finalizer: Finalizer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.guard: asyncio.Task[None] | None = None
        self.lock: asyncio.Lock | None = None
        self.error: BaseException | None = None
        self.warmup: asyncio.Task[bool] | None = None
        self.arrivals = warmup.Arrivals()
        self.logs: OffThreadLogs | None = None
        self.probe_for = probe_for
        self.keeper = Keeper()
        self._handovers: PendingHandovers | None = None

    @property
    def down(self) -> Down | None:
        """Why the finalizer is not running (``triggers.keeper``), or None while it is up."""
        return self.keeper.down

    @property
    def restarts(self) -> int:
        return self.keeper.restarts

    @property
    def handovers(self) -> PendingHandovers:
        """Process-wide: the hand-overs the ledger could not take outlive a finalizer's restart."""
        if self._handovers is None:
            from finalizer.handover import PendingHandovers

            self._handovers = PendingHandovers()
        return self._handovers

    async def get(self, ti: TaskInstanceRef | None = None) -> Finalizer:
        """This runner's finalizer, started on first use; ``ti`` (the caller's) is used for the warm-up."""
        loop = asyncio.get_running_loop()
        if self.finalizer is not None and self.loop is loop:
            if ti is not None:
                self.arrivals.note()  # a trigger arrived: the warm-up waits for a lull
            return self._alive(self.finalizer)
        if self.loop is not loop:
            # A new runner loop (tests): the old loop's finalizer goes first (lifetime rule).
            previous, self.finalizer = self.finalizer, None
            if previous is not None:
                await asyncio.to_thread(previous.drain)
            if self.logs is not None:  # the old loop's log routing ends with its finalizer
                self.logs.stop()
                self.logs = None
            self.guard, self.lock, self.error, self.warmup = None, None, None, None
            self.keeper.down = None
            self.loop = loop
        if ti is not None:
            if self.warmup is None:
                # Once per runner loop, not awaited: it runs while the finalizer starts and pods
                # run, once the first triggers stopped arriving.
                self.arrivals = warmup.Arrivals()
                # Process-wide work logs to the triggerer's log, not this trigger's (log_queue).
                self.warmup = process_wide().run(warmup.start, self.probe_for(ti), arrivals=self.arrivals)
            else:
                self.arrivals.note()
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.finalizer is None and self.keeper.down is None:
                try:
                    self.finalizer = await self._start()
                    keeper.available(True)
                except Exception as exc:
                    self._went_down(exc)
                    raise self._refusal() from exc
                finally:
                    if self.guard is None:
                        self.guard = loop.create_task(
                            self._guard(), name="kpo-finalizer-guard", context=process_wide()
                        )
        if self.finalizer is None:
            raise self._refusal()
        return self._alive(self.finalizer)

    # -- down and up again (the keeper) ---------------------------------------------------------

    def _alive(self, finalizer: Finalizer) -> Finalizer:
        """``finalizer`` if it still runs; else the runtime goes down and the caller is refused."""
        reason = keeper.dead(finalizer)
        if reason is None:
            return finalizer
        self._went_down(reason)
        raise self._refusal()

    def _refusal(self) -> FinalizerUnavailableError:
        down = self.keeper.down
        return FinalizerUnavailableError(
            down.describe() if down is not None else "the kpo-finalizer is not running"
        )

    def _went_down(self, why: BaseException | str) -> None:
        self.finalizer = None
        self.keeper.went_down(why)

    async def _restart_if_due(self) -> None:
        if not self.keeper.due():
            return
        try:
            finalizer = await self._start()
        except Exception as exc:
            self.keeper.attempt_failed(exc)
            return
        self.finalizer = finalizer
        self.keeper.came_up()

    async def _start(self) -> Finalizer:
        """Everything but the loop capture runs in a worker thread: the imports (SQLAlchemy, the
        drivers), reading the configuration, the ledger's connect and migrations would otherwise
        block the runner's loop while it is busy starting its first triggers. The configuration is
        read first, so that a failed first start already backs off by its own cap."""
        loop = asyncio.get_running_loop()
        config = await loop.run_in_executor(None, process_wide().run, _read_config)
        self.keeper.cap = keeper.backoff_cap(config)
        finalizer, logs, ledger = await loop.run_in_executor(
            None, process_wide().run, self._start_blocking, config, loop, self.logs, self.handovers
        )
        self.logs = logs
        process_wide().run(log.info, "kpo-finalizer started in the trigger runner (ledger %s)", ledger)
        return finalizer

    @staticmethod
    def _start_blocking(
        config: FinalizerConfig,
        loop: asyncio.AbstractEventLoop,
        logs: OffThreadLogs | None,
        handovers: PendingHandovers,
    ) -> tuple[Finalizer, OffThreadLogs, str]:
        """``logs``: this loop's log routing when a restart reuses it; else one is started."""
        try:
            from sqlalchemy.engine import make_url

            from api_client.supervisor import SupervisorXComStore
            from finalizer.service import Finalizer
            from finalizer.wiring import default_wiring
            from triggers.task_state import supervisor_task_state
        except ImportError as exc:
            raise FinalizerPartsMissingError(f"kpo-finalizer parts are missing: {exc}") from exc
        # The XCom sink inside the triggerer is the supervisor channel, bound to the runner's loop.
        store = SupervisorXComStore(loop=loop, max_in_flight=config.supervisor_calls_in_flight)
        # The finalizer's thread must never block on a log write to a busy supervisor.
        own = logs is None
        if logs is None:
            logs = OffThreadLogs()
            logs.start()
        wiring = default_wiring(store, task_state=supervisor_task_state())
        try:
            # Until the foundation is up; pending hand-overs are written before any adoption.
            finalizer = Finalizer.launch(config, wiring, handovers=handovers)
        except BaseException:
            if own:
                logs.stop()
            raise
        ledger = make_url(config.resolved_ledger_url).render_as_string(hide_password=True)
        return finalizer, logs, ledger

    async def _guard(self) -> None:
        """The keeper's tick on this runner loop: notices a finalizer that went down and restarts
        it with backoff; when the loop shuts down, drains whichever finalizer runs then."""
        loop = self.loop
        try:
            while True:
                await asyncio.sleep(keeper.KEEPER_TICK)
                if self.loop is not loop:
                    return  # a newer loop took over (tests); it has its own keeper
                if self.finalizer is not None and (reason := keeper.dead(self.finalizer)) is not None:
                    self._went_down(reason)
                await self._restart_if_due()
        finally:
            warm_task, logs = self.warmup, self.logs
            finalizer = self.finalizer if self.loop is loop else None
            with contextlib.suppress(BaseException):
                await warmup.stop(warm_task)
            if finalizer is not None:
                with contextlib.suppress(BaseException):
                    # Blocking drain in a worker thread: this loop keeps serving the XCom calls
                    # that in-flight jobs make while they finish.
                    await asyncio.shield(asyncio.to_thread(finalizer.drain))
                if self.finalizer is finalizer:
                    self.finalizer = None
            if (
                logs is not None and self.loop is loop
            ):  # its own: a newer loop's finalizer may have its own by now
                logs.stop()
                if self.logs is logs:
                    self.logs = None
            log.info("kpo-finalizer drained")


def _read_config() -> FinalizerConfig:
    """Airflow's ``[kpo_finalizer]`` section as a ``FinalizerConfig`` (raises ``ConfigurationError``)."""
    try:
        from finalizer.config import FinalizerConfig
    except ImportError as exc:
        raise FinalizerPartsMissingError(f"kpo-finalizer parts are missing: {exc}") from exc
    return FinalizerConfig.from_mapping(read_options(FinalizerConfig.model_fields))


_RUNTIME = _Runtime()


async def finalize(job: JobSpec) -> Outcome:
    """Submit ``job`` to this process's finalizer and await its outcome (from the runner's loop).

    Raises ``FinalizerUnavailableError`` / ``ConfigurationError`` when the finalizer cannot run:
    the trigger then takes the classic path and loses nothing.
    """
    try:
        finalizer = await _RUNTIME.get(job.ti)
    except (FinalizerUnavailableError, ConfigurationError):
        raise
    except Exception as exc:
        raise FinalizerUnavailableError(f"the finalizer could not start: {exc}") from exc
    return await finalizer.submit(job)


async def hand_over(job: JobSpec, reason: str) -> bool:
    """Record that ``job``'s task takes the classic path: its pod is the worker's from now on.

    Written to the ledger at once where the finalizer runs; otherwise kept pending and written by
    the next finalizer before it adopts anything. True when the ledger holds it now. Never raises.
    """
    runtime = _RUNTIME
    finalizer = runtime.finalizer if runtime.loop is asyncio.get_running_loop() else None
    recorded = False
    try:
        if finalizer is not None:
            recorded = await finalizer.hand_over(job, reason)
        else:
            runtime.handovers.add(job.key, reason)
    except Exception as exc:  # the classic path goes on whatever happens here
        runtime.handovers.add(job.key, reason)
        log.warning("kpo-finalizer: hand-over of %s kept pending (%s: %s)", job.key, type(exc).__name__, exc)
    keeper.metrics().handovers.inc(recorded="yes" if recorded else "pending")
    return recorded


async def delete_pod(job: JobSpec) -> bool | None:
    """Delete ``job``'s pod through this runner's finalizer (uid precondition) for ``on_kill``.

    None when no finalizer runs on this loop (the caller then deletes by name, as upstream);
    otherwise True if deleted now, False if already gone. Raises ``PodConflictError`` when another
    pod holds the name, and the finalizer's errors.
    """
    finalizer = _RUNTIME.finalizer
    if finalizer is None or _RUNTIME.loop is not asyncio.get_running_loop():
        return None
    return await finalizer.delete_pod(job)
