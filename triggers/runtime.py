"""The finalizer inside ``airflow triggerer``: one per trigger-runner process, shared by its triggers.

The first ``FinalizingPodTrigger`` that needs it starts it (lazily, on the runner's event loop):
the XCom store is created on that loop (``XCom.aset`` must run there), the configuration comes
from Airflow's ``[kpo_finalizer]`` section, and a guard task on the runner's loop drains the
finalizer when the loop shuts down (``asyncio.run`` cancels every remaining task at exit; the
guard's ``finally`` runs while the loop still serves XCom calls). Triggers only ``submit`` a
``JobSpec`` and await its ``Outcome``; they never block the runner's loop.

The first ``get`` in a runner also starts a read-only warm-up of the supervisor channel
(``triggers.warmup``), alongside the finalizer's start-up: Airflow builds its in-process Execution
API on the first supervisor request, and that cost should not land on the first finished pod.

Everything process-wide lives in one ``_Runtime`` object so tests can reset it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from finalizer.exceptions import ConfigurationError, FinalizerUnavailableError
from finalizer.jobs import JobSpec, Outcome, TaskInstanceRef
from triggers import warmup

log = logging.getLogger(__name__)

CONFIG_SECTION = "kpo_finalizer"


def finalizer_config_values() -> dict[str, Any]:
    """The ``[kpo_finalizer]`` options that belong to the process-wide finalizer (not the policy)."""
    from airflow.configuration import conf

    from finalizer.config import FinalizerConfig

    fields = set(FinalizerConfig.model_fields)
    values: dict[str, Any] = {}
    if conf.has_section(CONFIG_SECTION):
        for key, value in conf.getsection(CONFIG_SECTION).items():
            if key in fields:
                values[key] = value
    # Environment variables for options not present in the file (getsection includes most).
    for key in fields:
        if key not in values:
            value = conf.get(CONFIG_SECTION, key, fallback=None)
            if value is not None:
                values[key] = value
    return values


class _Runtime:
    """The process's finalizer, its XCom store, the channel warm-up and the guard that drains it."""

    def __init__(self, probe_for: Callable[[TaskInstanceRef], warmup.Probe] = warmup.dag_run_probe) -> None:
        self.finalizer: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.guard: asyncio.Task[None] | None = None
        self.lock: asyncio.Lock | None = None
        self.error: BaseException | None = None
        self.warmup: asyncio.Task[bool] | None = None
        self.probe_for = probe_for

    async def get(self, ti: TaskInstanceRef | None = None) -> Any:
        """This runner's finalizer, started on first use; ``ti`` (the caller's) is used for the warm-up."""
        loop = asyncio.get_running_loop()
        if self.finalizer is not None and self.loop is loop:
            return self.finalizer
        if self.loop is not loop:
            # A new runner loop (tests, or a fresh process image): start over.
            self.finalizer, self.guard, self.lock, self.error = None, None, None, None
            self.warmup = None
            self.loop = loop
        if self.warmup is None and ti is not None:
            # Once per runner loop, not awaited: it runs while the finalizer starts and pods run.
            self.warmup = warmup.start(self.probe_for(ti))
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.finalizer is None:
                self.finalizer = await self._start()
                self.guard = loop.create_task(self._guard(self.finalizer), name="kpo-finalizer-guard")
        return self.finalizer

    async def _start(self) -> Any:
        try:
            from api_client.supervisor import SupervisorXComStore
            from finalizer.config import FinalizerConfig
            from finalizer.service import Finalizer
            from finalizer.wiring import default_wiring
        except ImportError as exc:
            raise FinalizerUnavailableError(f"kpo-finalizer parts are missing: {exc}") from exc
        config = FinalizerConfig.from_mapping(finalizer_config_values())
        store = SupervisorXComStore()
        # The XCom sink inside the triggerer is the supervisor channel, bound to this (the runner's) loop.
        # ``shared`` blocks until the foundation (ledger, clients) is up: not on the runner's loop.
        finalizer: Any = await asyncio.to_thread(Finalizer.shared, config, default_wiring(store))
        log.info("kpo-finalizer started in the trigger runner (ledger %s)", config.resolved_ledger_url)
        return finalizer

    async def _guard(self, finalizer: Any) -> None:
        """Sleeps until the runner's loop shuts down, then drains the finalizer."""
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(BaseException):
                await warmup.stop(self.warmup)
            with contextlib.suppress(BaseException):
                # Blocking drain in a worker thread: this loop keeps serving the XCom calls
                # that in-flight jobs make while they finish.
                await asyncio.shield(asyncio.to_thread(type(finalizer).reset_shared))
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
    outcome: Outcome = await finalizer.submit(job)
    return outcome


async def delete_pod(job: JobSpec) -> bool | None:
    """Delete ``job``'s pod through this runner's finalizer (uid precondition) for ``on_kill``.

    None when no finalizer runs on this loop (the caller then deletes by name, as upstream);
    otherwise True if deleted now, False if already gone. Raises ``PodConflictError`` when another
    pod holds the name, and the finalizer's errors.
    """
    finalizer = _RUNTIME.finalizer
    if finalizer is None or _RUNTIME.loop is not asyncio.get_running_loop():
        return None
    deleted: bool = await finalizer.delete_pod(job)
    return deleted
