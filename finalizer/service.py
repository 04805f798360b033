"""The process-wide ``Finalizer``: its own thread and event loop, shared by every trigger.

The trigger runner's loop must never block (a loop stalled 30 s loses every trigger), so the
finalizer runs on a dedicated asyncio loop in an anyio blocking portal thread. Any loop submits a
``JobSpec`` and awaits the ``Outcome`` through ``asyncio.wrap_future``; the same job key submitted
twice (a trigger re-run) joins the work already under way.

Around the pipeline the service keeps: an instance row with a heartbeat, adoption of stale jobs
of dead instances, bounded concurrency (a semaphore per cluster), a health signal (queue depth,
in-flight, loop lag from a periodic tick) and ``drain`` (stop taking work; let in-flight jobs
finish up to a timeout, park the rest in the ledger — never delete a pod on shutdown).

Crash, don't hang: if the foundation fails (ledger unreachable past ``ledger_deadline``, the
loop thread gone) every waiting caller gets ``LedgerUnavailableError`` /
``FinalizerUnavailableError`` at once, and every child is torn down in ``finally``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal

from api_client.backoff import retry_async
from api_client.store import XComStore
from finalizer import upkeep
from finalizer.config import FinalizerConfig
from finalizer.exceptions import (
    ConfigurationError,
    FinalizerError,
    FinalizerUnavailableError,
    LedgerError,
    LedgerUnavailableError,
)
from finalizer.jobs import JobSpec, Outcome, Step
from finalizer.loops import loop_factory, loop_name
from finalizer.metrics import METRICS
from finalizer.pipeline import Pipeline, StepHook, StepReached, ledger_policy, ledger_transient
from finalizer.seams import Foundation, ServiceLedger, Wiring
from finalizer.upkeep import Health

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class _Job:
    spec: JobSpec
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None
    error: BaseException | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    active: bool = False
    #: The latest ledger record (for release on drain).
    rec: Any = None

    def finish(self, outcome: Outcome | None = None, error: BaseException | None = None) -> None:
        if self.done.is_set():
            return
        self.outcome, self.error = outcome, error
        self.done.set()


class Finalizer:
    """One per process; ``Finalizer.shared(config, wiring)`` starts it lazily and thread-safely."""

    _shared: ClassVar[Finalizer | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, config: FinalizerConfig, wiring: Wiring, *, on_step: StepHook | None = None) -> None:
        self.config = config
        self._wiring = wiring
        self._on_step = on_step
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._main_future: concurrent.futures.Future[None] | None = None
        self._jobs: dict[str, _Job] = {}
        self._slots: dict[str, anyio.Semaphore] = {}
        self._capacity: anyio.CapacityLimiter | None = None
        self._stop: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._foundation: Foundation | None = None
        self._pipeline: Pipeline | None = None
        self.instance_id: str | None = None
        self._draining = False
        self._failure: BaseException | None = None
        self._queued = 0
        self._in_flight = 0
        self._done = 0
        self._lag = upkeep.Lag()
        self._loop_name = "asyncio"
        self._closed = threading.Event()

    # -- lifecycle (any thread) -----------------------------------------------------------------

    @classmethod
    def shared(
        cls, config: FinalizerConfig, wiring: Wiring | None = None, *, xcoms: XComStore | None = None
    ) -> Finalizer:
        """The process-wide finalizer, started by the first caller. A failed one stays failed.

        Give ``wiring``, or ``xcoms`` (an ``api_client.XComStore``) for the default wiring.
        Raises ``LedgerUnavailableError`` / ``ConfigurationError`` if it cannot start.
        """
        with cls._shared_lock:
            if cls._shared is None:
                if wiring is None:
                    if xcoms is None:
                        raise ConfigurationError("Finalizer.shared needs a wiring or an XCom store")
                    from finalizer.wiring import default_wiring

                    wiring = default_wiring(xcoms)
                cls._shared = cls.launch(config, wiring)
            return cls._shared

    @classmethod
    async def ashared(
        cls, config: FinalizerConfig, wiring: Wiring | None = None, *, xcoms: XComStore | None = None
    ) -> Finalizer:
        """``shared`` from an event loop: the start-up (ledger connect) runs in a worker thread."""
        return await anyio.to_thread.run_sync(lambda: cls.shared(config, wiring, xcoms=xcoms))

    @classmethod
    def reset_shared(cls, timeout: float | None = None) -> None:
        """Drain and forget the shared finalizer (end of process, tests)."""
        with cls._shared_lock:
            current, cls._shared = cls._shared, None
        if current is not None:
            current.drain(timeout)

    @classmethod
    def launch(cls, config: FinalizerConfig, wiring: Wiring, *, on_step: StepHook | None = None) -> Finalizer:
        """Start the loop thread and wait until the foundation is up (raises if it cannot be)."""
        self = cls(config, wiring, on_step=on_step)
        factory = loop_factory(config.event_loop)  # a missing uvloop fails here, before any thread
        options = {"loop_factory": factory} if factory is not None else None
        self._portal_cm = start_blocking_portal("asyncio", options, name="kpo-finalizer")
        self._portal = self._portal_cm.__enter__()
        try:
            self._main_future, _ = self._portal.start_task(self._main, name="kpo-finalizer-main")
        except BaseException:
            self._close_portal()
            raise
        self._main_future.add_done_callback(self._on_main_done)
        return self

    def _on_main_done(self, future: concurrent.futures.Future[None]) -> None:
        # Runs on the loop thread; the portal cannot be closed from there.
        threading.Thread(target=self._close_portal, name="kpo-finalizer-close", daemon=True).start()

    def _close_portal(self) -> None:
        if self._portal_cm is not None and not self._closed.is_set():
            self._closed.set()
            try:
                self._portal_cm.__exit__(None, None, None)
            except BaseException as exc:
                log.warning("kpo-finalizer: error while closing its loop: %r", exc)

    def drain(self, timeout: float | None = None) -> None:
        """Stop taking work, finish in-flight jobs for up to ``timeout`` s, park the rest, stop.

        Blocking; call from any thread but the finalizer's own (from a loop: ``await adrain()``).
        """
        portal = self._portal
        timeout = self.config.drain_timeout if timeout is None else timeout
        if portal is not None and not self._closed.is_set():
            with contextlib.suppress(RuntimeError):  # the loop already stopped
                portal.call(self._drain, timeout)
        if self._main_future is not None:
            concurrent.futures.wait([self._main_future], timeout=timeout + 10)
        self._close_portal()

    async def adrain(self, drain_timeout: float | None = None) -> None:
        """``drain`` from an event loop, without blocking it."""
        await anyio.to_thread.run_sync(self.drain, drain_timeout)

    # -- submitting (any thread, any loop) ------------------------------------------------------

    def submit_future(self, spec: JobSpec) -> concurrent.futures.Future[Outcome]:
        """Hand a job to the finalizer from any thread; the future resolves to its ``Outcome``."""
        self._check_available()
        return self._on_loop(self._run_or_join, spec)

    def _on_loop(self, fn: Callable[[JobSpec], Awaitable[T]], spec: JobSpec) -> concurrent.futures.Future[T]:
        """Start ``fn(spec)`` on the finalizer's loop; a loop that is gone is our error, not anyio's."""
        if self._portal is None:
            raise FinalizerUnavailableError("the kpo-finalizer loop is not running")
        try:
            return self._portal.start_task_soon(fn, spec)
        except RuntimeError as exc:
            raise FinalizerUnavailableError("the kpo-finalizer loop is not running") from exc

    async def submit(self, spec: JobSpec) -> Outcome:
        """Submit and await the outcome from any asyncio loop, without blocking it.

        Cancelling the caller stops only the waiting, not the job (it finishes, or parks on drain).
        """
        future = self.submit_future(spec)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and task is not None and task.cancelling() == 0:
                # Not our caller's cancellation: the finalizer's loop went away under the job.
                raise FinalizerUnavailableError(
                    "the kpo-finalizer loop stopped while this job was waiting"
                ) from None
            raise

    async def delete_pod(self, spec: JobSpec) -> bool:
        """Delete ``spec``'s pod with its uid precondition (``on_kill``), from any asyncio loop.

        True if deleted now, False if already gone; ``PodConflictError`` when another pod holds the
        name (not ours to delete). Runs on the finalizer's loop, with its shared cluster client.
        """
        if self._failure is not None:
            raise self._unavailable()
        if self._closed.is_set():
            raise FinalizerUnavailableError("the kpo-finalizer loop is not running")
        return await asyncio.wrap_future(self._on_loop(self._delete_pod, spec))

    async def _delete_pod(self, spec: JobSpec) -> bool:
        assert self._foundation is not None
        cluster = await self._foundation.cluster_for(spec)
        return await cluster.delete_pod(spec.pod, spec.settings.termination_grace_period)

    def health(self) -> Health:
        return Health(
            running=self._main_future is not None and not self._main_future.done(),
            draining=self._draining,
            failure=repr(self._failure) if self._failure is not None else None,
            queue_depth=self._queued,
            in_flight=self._in_flight,
            watching=max(0, len(self._jobs) - self._queued - self._in_flight),
            loop_lag=self._lag.last,
            loop_lag_max=self._lag.worst,
            jobs_done=self._done,
            event_loop=self._loop_name,
        )

    def _check_available(self) -> None:
        if self._failure is not None:
            raise self._unavailable()
        if self._draining or self._closed.is_set():
            raise FinalizerUnavailableError("the kpo-finalizer is draining or stopped: no new work")

    def _unavailable(self) -> FinalizerError:
        failure = self._failure
        if isinstance(failure, LedgerUnavailableError):
            error: FinalizerError = LedgerUnavailableError(str(failure))
        else:
            error = FinalizerUnavailableError(f"the kpo-finalizer loop failed: {failure!r}")
        error.__cause__ = failure
        return error

    # -- on the finalizer's loop ----------------------------------------------------------------

    async def _main(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._loop_name = loop_name(asyncio.get_running_loop())
        log.info("kpo-finalizer loop runs on %s", self._loop_name)
        self._stop = anyio.Event()
        self._capacity = anyio.CapacityLimiter(self.config.queue_bound)
        stack = AsyncExitStack()
        try:
            with anyio.fail_after(self.config.ledger_deadline):
                foundation = await self._wiring(self.config, stack)
                self.instance_id = await foundation.ledger.register_instance(
                    socket.gethostname(), os.getpid()
                )
            self._foundation = foundation
            self._pipeline = Pipeline(
                config=self.config,
                cluster_for=foundation.cluster_for,
                ledger=foundation.ledger,
                xcoms=foundation.xcoms,
                classify=foundation.classify,
                slot=self._slot,
                on_step=self._track,
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(upkeep.heartbeat, foundation.ledger, self.instance_id, self.config, self._fail)
                tg.start_soon(upkeep.measure_lag, self.config.lag_tick_interval, self._lag)
                if self.config.adopt_interval > 0:
                    tg.start_soon(self._adopt_loop, foundation.ledger)
                tg.start_soon(upkeep.purge_payloads, foundation.ledger, self.config)
                log.info("kpo-finalizer %s started", self.instance_id)
                task_status.started()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        except TimeoutError as exc:
            self._fail(
                LedgerUnavailableError(f"the ledger did not answer within {self.config.ledger_deadline:g}s")
            )
            raise self._failure from exc  # type: ignore[misc]
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            for job in list(self._jobs.values()):
                job.finish(error=self._unavailable() if self._failure else _parked())
            self._jobs.clear()
            # Close the foundation shielded (it must close even when the loop is being cancelled)
            # and bounded (a hung close must not hang shutdown).
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.call_timeout):
                await stack.aclose()
            log.info("kpo-finalizer %s stopped", self.instance_id)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None and not isinstance(exc, anyio.get_cancelled_exc_class()):
            self._failure = exc
            log.critical("kpo-finalizer failed, every waiting job gets an error: %r", exc)

    async def _adopt_loop(self, ledger: ServiceLedger) -> None:
        """Take over jobs of instances whose heartbeat is older than the stale threshold."""
        assert self.instance_id is not None
        assert self._tg is not None
        while not self._draining:
            room = self.config.queue_bound - len(self._jobs)
            if room > 0:
                try:
                    records = await ledger.adopt_stale(
                        self.instance_id, threshold=self.config.stale_threshold, limit=room
                    )
                except LedgerError as exc:
                    log.warning("kpo-finalizer adoption failed (%s); will retry", type(exc).__name__)
                    records = []
                for rec in records:
                    spec = rec.spec
                    if spec.key in self._jobs:
                        continue
                    log.info(
                        "kpo-finalizer %s adopted job %s at %s", self.instance_id, spec.key, rec.step.name
                    )
                    job = _Job(spec)
                    self._jobs[spec.key] = job
                    self._tg.start_soon(self._run_job, job, rec)
            await anyio.sleep(self.config.adopt_interval)

    async def _run_or_join(self, spec: JobSpec) -> Outcome:
        """Start the job unless it is already running here; then wait for its outcome."""
        self._check_available()
        job = self._jobs.get(spec.key)
        if job is None:
            assert self._tg is not None
            job = _Job(spec)
            self._jobs[spec.key] = job
            self._tg.start_soon(self._run_job, job, None)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.outcome is not None
        return job.outcome

    async def _run_job(self, job: _Job, rec: Any) -> None:
        assert self._foundation is not None
        assert self._pipeline is not None
        assert self._capacity is not None
        assert self.instance_id is not None
        spec = job.spec
        try:
            with job.scope:
                async with self._capacity:
                    if rec is None:
                        rec = await self._claim(spec)
                    job.rec = rec
                    outcome = await self._pipeline.run(spec, rec)
                self._done += 1
                job.finish(outcome=outcome)
        except FinalizerError as exc:
            log.warning("kpo-finalizer job %s ended with %s: %s", spec.key, type(exc).__name__, exc)
            job.finish(error=exc)
        except Exception as exc:
            log.exception("kpo-finalizer job %s crashed", spec.key)
            job.finish(error=FinalizerUnavailableError(f"job {spec.key} crashed: {exc!r}"))
        finally:
            job.finish(error=self._unavailable() if self._failure is not None else _parked())
            if self._jobs.get(spec.key) is job:
                del self._jobs[spec.key]

    async def _claim(self, spec: JobSpec) -> Any:
        """Our record of the job. While another live instance owns it, follow it: never run it twice.

        ``submit`` returns a DONE job as is and adopts one whose owner died; otherwise we poll.
        """
        assert self._foundation is not None
        assert self.instance_id is not None
        ledger, owner = self._foundation.ledger, self.instance_id
        policy = ledger_policy(self.config)
        while True:
            rec = await retry_async(lambda: ledger.submit(spec, owner), policy, ledger_transient)
            if rec.owner == self.instance_id or rec.step >= Step.DONE:
                return rec
            log.info("job %s is being finalized by live instance %s; following it", spec.key, rec.owner)
            await anyio.sleep(self.config.heartbeat_interval)

    async def _track(self, spec: JobSpec, reached: StepReached) -> None:
        job = self._jobs.get(spec.key)
        if job is not None:
            job.rec = reached.rec
        if self._on_step is not None:
            await self._on_step(spec, reached)

    @asynccontextmanager
    async def _slot(self, spec: JobSpec) -> Any:
        """Bounded concurrency per cluster; counts queue depth and in-flight for ``health``."""
        sem = self._slots.get(spec.cluster.key)
        if sem is None:
            sem = self._slots[spec.cluster.key] = anyio.Semaphore(self.config.concurrency_per_cluster)
        job = self._jobs.get(spec.key)
        self._queued += 1
        try:
            await sem.acquire()
        finally:
            self._queued -= 1
        self._in_flight += 1
        METRICS.in_flight.set(self._in_flight)
        METRICS.queue_depth.set(len(self._jobs))
        if job is not None:
            job.active = True
        try:
            yield
        finally:
            self._in_flight -= 1
            METRICS.in_flight.set(self._in_flight)
            if job is not None:
                job.active = False
            sem.release()

    async def _drain(self, grace: float) -> None:
        """Refuse new work; give active jobs ``grace`` s; cancel (park) everything else."""
        self._draining = True
        for job in list(self._jobs.values()):
            if not job.active:
                job.scope.cancel()  # watching or queued: parked in the ledger as it is
        with anyio.move_on_after(grace):
            for job in list(self._jobs.values()):
                await job.done.wait()  # only active jobs are left running
        for job in list(self._jobs.values()):
            job.scope.cancel()
        # Parked jobs become adoptable at once (by a restarted us, or another instance).
        if self._foundation is not None and self.instance_id is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.call_timeout):
                try:
                    await self._foundation.ledger.unregister(self.instance_id)
                except LedgerError as exc:
                    log.warning("kpo-finalizer could not unregister (%s); its jobs go stale instead", exc)
        if self._stop is not None:
            self._stop.set()


def _parked() -> FinalizerUnavailableError:
    return FinalizerUnavailableError(
        "the kpo-finalizer stopped before this job finished; "
        "it is parked in the ledger and resumes on the next run"
    )


__all__ = ["Finalizer", "Foundation", "Health", "Wiring"]
