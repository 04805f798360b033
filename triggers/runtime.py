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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from finalizer.exceptions import ConfigurationError, FinalizerUnavailableError
from finalizer.jobs import JobSpec, Outcome, TaskInstanceRef
from triggers import warmup
from triggers.log_queue import OffThreadLogs, process_wide
from triggers.settings import read_options

if TYPE_CHECKING:  # imported when the first trigger starts it: DAG parsing in workers stays light
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

    async def get(self, ti: TaskInstanceRef | None = None) -> Finalizer:
        """This runner's finalizer, started on first use; ``ti`` (the caller's) is used for the warm-up."""
        loop = asyncio.get_running_loop()
        if self.finalizer is not None and self.loop is loop:
            if ti is not None:
                self.arrivals.note()  # a trigger arrived: the warm-up waits for a lull
            return self.finalizer
        if self.loop is not loop:
            # A new runner loop (tests): the old loop's finalizer goes first (lifetime rule).
            previous, self.finalizer = self.finalizer, None
            if previous is not None:
                await asyncio.to_thread(previous.drain)
            if self.logs is not None:  # the old loop's log routing ends with its finalizer
                self.logs.stop()
                self.logs = None
            self.guard, self.lock, self.error, self.warmup = None, None, None, None
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
            if self.finalizer is None:
                self.finalizer = await self._start()
                guard = self._guard(self.finalizer, self.warmup, self.logs)
                self.guard = loop.create_task(guard, name="kpo-finalizer-guard", context=process_wide())
        return self.finalizer

    async def _start(self) -> Finalizer:
        """Everything but the loop capture runs in a worker thread: the imports (SQLAlchemy, the
        drivers), reading the configuration, the ledger's connect and migrations would otherwise
        block the runner's loop while it is busy starting its first triggers."""
        loop = asyncio.get_running_loop()
        finalizer, logs, ledger = await loop.run_in_executor(
            None, process_wide().run, self._start_blocking, loop
        )
        self.logs = logs
        process_wide().run(log.info, "kpo-finalizer started in the trigger runner (ledger %s)", ledger)
        return finalizer

    @staticmethod
    def _start_blocking(loop: asyncio.AbstractEventLoop) -> tuple[Finalizer, OffThreadLogs, str]:
        try:
            from sqlalchemy.engine import make_url

            from api_client.supervisor import SupervisorXComStore
            from finalizer.config import FinalizerConfig
            from finalizer.service import Finalizer
            from finalizer.wiring import default_wiring
        except ImportError as exc:
            raise FinalizerUnavailableError(f"kpo-finalizer parts are missing: {exc}") from exc
        config = FinalizerConfig.from_mapping(read_options(FinalizerConfig.model_fields))
        # The XCom sink inside the triggerer is the supervisor channel, bound to the runner's loop.
        store = SupervisorXComStore(loop=loop, max_in_flight=config.supervisor_calls_in_flight)
        # The finalizer's thread must never block on a log write to a busy supervisor.
        logs = OffThreadLogs()
        logs.start()
        try:
            finalizer = Finalizer.launch(config, default_wiring(store))  # until the foundation is up
        except BaseException:
            logs.stop()
            raise
        ledger = make_url(config.resolved_ledger_url).render_as_string(hide_password=True)
        return finalizer, logs, ledger

    async def _guard(
        self, finalizer: Finalizer, warm_task: asyncio.Task[bool] | None, logs: OffThreadLogs | None
    ) -> None:
        """Sleeps until the runner's loop shuts down, then drains the finalizer."""
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(BaseException):
                await warmup.stop(warm_task)
            with contextlib.suppress(BaseException):
                # Blocking drain in a worker thread: this loop keeps serving the XCom calls
                # that in-flight jobs make while they finish.
                await asyncio.shield(asyncio.to_thread(finalizer.drain))
            if self.finalizer is finalizer:
                self.finalizer = None
            if logs is not None:  # its own: a newer loop's finalizer may have its own by now
                logs.stop()
                if self.logs is logs:
                    self.logs = None
            log.info("kpo-finalizer drained")


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
