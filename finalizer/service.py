"""The ``Finalizer`` façade: start it, submit jobs from any loop, ask its health, drain it.

Three pieces do the work, each in its own module:

- ``finalizer.loop_thread.LoopThread`` — the dedicated thread and event loop (anyio portal);
- ``finalizer.admission.Admission`` — the job table, the claim in the ledger, adoption, the
  queue bound;
- ``finalizer.pipeline.Pipeline`` — one job's steps, gated by ``finalizer.limiter.ClusterLimiter``.

This module wires them on the finalizer's loop (``_main``) and offers what callers need: any loop
submits a ``JobSpec`` and awaits the ``Outcome`` through ``asyncio.wrap_future``; the same job key
submitted twice (a trigger re-run) joins the work already under way.

Lifetime: whoever calls ``Finalizer.launch`` owns the instance and drains it. Inside
``airflow triggerer`` that owner is ``triggers.runtime`` (one finalizer per trigger-runner loop).
Drain never deletes a pod: it lets in-flight jobs finish up to a timeout and parks the rest in
the ledger.

Crash, don't hang: if the foundation fails (ledger unreachable past ``ledger_deadline``, the
loop thread gone) every waiting caller gets ``LedgerUnavailableError`` /
``FinalizerUnavailableError`` at once, and every child is torn down in ``finally``. A failed
instance never comes back; its owner starts a new one (``triggers.runtime`` does, with backoff).

Hand-overs: ``hand_over`` records that a task went the classic way; what the ledger cannot take
now stays in the ``PendingHandovers`` given at launch, written before this instance (or the next
one given the same object) adopts anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import socket
from contextlib import AsyncExitStack

import anyio
from anyio.abc import TaskStatus

from finalizer import handover, upkeep
from finalizer.admission import Admission
from finalizer.config import FinalizerConfig
from finalizer.exceptions import (
    FinalizerError,
    FinalizerUnavailableError,
    LedgerError,
    LedgerUnavailableError,
)
from finalizer.handover import PendingHandovers
from finalizer.jobs import JobSpec, Outcome
from finalizer.limiter import ClusterLimiter
from finalizer.loop_thread import LoopThread
from finalizer.loops import loop_name
from finalizer.pipeline import Pipeline, StepHook
from finalizer.seams import Foundation, Wiring
from finalizer.upkeep import Health

log = logging.getLogger(__name__)


class Finalizer:
    """One running finalizer: ``Finalizer.launch(config, wiring)``, then ``submit``; ``drain`` at the end."""

    def __init__(
        self,
        config: FinalizerConfig,
        wiring: Wiring,
        *,
        on_step: StepHook | None = None,
        handovers: PendingHandovers | None = None,
    ) -> None:
        self.config = config
        self.handovers = handovers if handovers is not None else PendingHandovers()
        self._wiring = wiring
        self._on_step = on_step
        self._thread: LoopThread | None = None
        self._stop: anyio.Event | None = None
        self._foundation: Foundation | None = None
        self._limiter = ClusterLimiter(config.concurrency_per_cluster)
        self._admission: Admission | None = None
        self.instance_id: str | None = None
        self._failure: BaseException | None = None
        self._lag = upkeep.Lag()
        self._loop_name = "asyncio"

    # -- lifecycle (any thread) -----------------------------------------------------------------

    @classmethod
    def launch(
        cls,
        config: FinalizerConfig,
        wiring: Wiring,
        *,
        on_step: StepHook | None = None,
        handovers: PendingHandovers | None = None,
    ) -> Finalizer:
        """Start the loop thread and wait until the foundation is up (raises if it cannot be).

        ``handovers``: hand-overs an earlier instance could not record; written before any adoption.
        """
        self = cls(config, wiring, on_step=on_step, handovers=handovers)
        self._thread = LoopThread(config.event_loop)
        self._thread.start_main(self._main, name="kpo-finalizer-main")
        return self

    @property
    def _closed(self) -> bool:
        return self._thread is None or self._thread.closed

    @property
    def _draining(self) -> bool:
        return self._admission is not None and self._admission.draining

    def drain(self, timeout: float | None = None) -> None:
        """Stop taking work, finish in-flight jobs for up to ``timeout`` s, park the rest, stop.

        Blocking; call from any thread but the finalizer's own (from a loop: ``await adrain()``).
        """
        thread = self._thread
        if thread is None:
            return
        timeout = self.config.drain_timeout if timeout is None else timeout
        thread.call(self._drain, timeout)
        if thread.main is not None:
            concurrent.futures.wait([thread.main], timeout=timeout + 10)
        thread.close()

    async def adrain(self, drain_timeout: float | None = None) -> None:
        """``drain`` from an event loop, without blocking it."""
        await anyio.to_thread.run_sync(self.drain, drain_timeout)

    # -- submitting (any thread, any loop) ------------------------------------------------------

    def submit_future(self, spec: JobSpec) -> concurrent.futures.Future[Outcome]:
        """Hand a job to the finalizer from any thread; the future resolves to its ``Outcome``."""
        self._check_available()
        assert self._thread is not None
        return self._thread.start_soon(self._run_or_join, spec)

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
        """Delete ``spec``'s pod with its uid precondition (``on_kill``), from any asyncio loop; for a
        batch spec, its Job with ``on_kill_propagation_policy``.

        True if deleted now, False if already gone; ``PodConflictError`` when another pod holds the
        name (not ours to delete). Runs on the finalizer's loop, with its shared cluster client.
        """
        if self._failure is not None:
            raise self._unavailable()
        if self._thread is None:
            raise FinalizerUnavailableError("the kpo-finalizer loop is not running")
        return await asyncio.wrap_future(self._thread.start_soon(self._delete_pod, spec))

    async def _delete_pod(self, spec: JobSpec) -> bool:
        assert self._foundation is not None
        cluster = await self._foundation.cluster_for(spec)
        grace = spec.settings.termination_grace_period
        if spec.batch_job is not None:  # a Job: deleted as upstream's on_kill does (uid precondition)
            job = spec.batch_job
            return await cluster.delete_batch_job(job, job.on_kill_propagation_policy, grace)
        return await cluster.delete_pod(spec.pod, grace)

    @property
    def failure(self) -> BaseException | None:
        """Why this instance failed (it then never recovers: start a new one), or None."""
        return self._failure

    async def hand_over(self, spec: JobSpec, reason: str) -> bool:
        """Record that ``spec``'s task goes to the worker path, from any asyncio loop.

        Kept pending first, then written within ``call_timeout`` when this instance is up; True
        once the ledger holds it. Where it does not, it stays pending (see the module docstring).
        """
        self.handovers.add(spec.key, reason)
        thread = self._thread
        if self._failure is not None or thread is None or thread.closed or self._foundation is None:
            return False
        try:
            return await asyncio.wrap_future(thread.start_soon(self._write_hand_over, spec.key))
        except (FinalizerError, RuntimeError, concurrent.futures.CancelledError) as exc:
            log.warning(
                "kpo-finalizer: hand-over of job %s not recorded yet (%s); kept pending", spec.key, exc
            )
            return False

    async def _write_hand_over(self, key: str) -> bool:
        assert self._foundation is not None
        if self._admission is not None:
            self._admission.hand_over(key, self.handovers.reason(key) or "handed over")
        # Briefly: the trigger waits for this before its classic path; what does not make it in
        # time stays pending.
        with anyio.move_on_after(min(5.0, self.config.call_timeout)):
            await handover.flush(self.handovers, self._foundation.ledger, [key])
        return key not in self.handovers

    def health(self) -> Health:
        main = self._thread.main if self._thread is not None else None
        admission = self._admission
        return Health(
            running=main is not None and not main.done(),
            draining=self._draining,
            failure=repr(self._failure) if self._failure is not None else None,
            queue_depth=self._limiter.queued,
            in_flight=self._limiter.in_flight,
            watching=admission.watching if admission is not None else 0,
            loop_lag=self._lag.last,
            loop_lag_max=self._lag.worst,
            jobs_done=admission.done_count if admission is not None else 0,
            event_loop=self._loop_name,
        )

    def _check_available(self) -> None:
        if self._failure is not None:
            raise self._unavailable()
        if self._draining or self._closed:
            raise FinalizerUnavailableError("the kpo-finalizer is draining or stopped: no new work")

    def _unavailable(self) -> FinalizerError:
        failure = self._failure
        if isinstance(failure, LedgerUnavailableError):
            error: FinalizerError = LedgerUnavailableError(str(failure))
        else:
            error = FinalizerUnavailableError(f"the kpo-finalizer loop failed: {failure!r}")
        error.__cause__ = failure
        return error

    def _ended(self) -> FinalizerError:
        """What a job that ends without an outcome gets: the failure, or "parked"."""
        return self._unavailable() if self._failure is not None else _parked()

    # -- on the finalizer's loop ----------------------------------------------------------------

    async def _main(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._loop_name = loop_name(asyncio.get_running_loop())
        log.info("kpo-finalizer loop runs on %s", self._loop_name)
        self._stop = anyio.Event()
        stack = AsyncExitStack()
        try:
            with anyio.fail_after(self.config.ledger_deadline):
                foundation = await self._wiring(self.config, stack)
                instance_id = await foundation.ledger.register_instance(socket.gethostname(), os.getpid())
                # Before anything is adopted: the tasks an earlier instance handed to the worker.
                await handover.flush(self.handovers, foundation.ledger)
            self._foundation, self.instance_id = foundation, instance_id
            pipeline = Pipeline(
                config=self.config,
                cluster_for=foundation.cluster_for,
                ledger=foundation.ledger,
                xcoms=foundation.xcoms,
                classify=foundation.classify,
                slots=self._limiter,
                on_step=self._on_step,
            )
            # The ledger just answered: the adopter's quiet window (admission) starts now.
            reach = upkeep.Reachability()
            async with anyio.create_task_group() as tg:
                self._admission = Admission(
                    self.config,
                    foundation.ledger,
                    instance_id,
                    pipeline.run,
                    self._limiter,
                    tg,
                    ended=self._ended,
                    handovers=self.handovers,
                    task_state=foundation.task_state,
                    reach=reach,
                )
                tg.start_soon(
                    functools.partial(upkeep.heartbeat, handovers=self.handovers, reach=reach),
                    foundation.ledger,
                    instance_id,
                    self.config,
                    self._fail,
                )
                tg.start_soon(upkeep.measure_lag, self.config.lag_tick_interval, self._lag)
                if self.config.adopt_interval > 0:
                    tg.start_soon(self._admission.adopt_forever)
                tg.start_soon(upkeep.purge_payloads, foundation.ledger, self.config)
                log.info("kpo-finalizer %s started", instance_id)
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
            if self._admission is not None:
                self._admission.end_all()
            # Close the foundation shielded (it must close even when the loop is being cancelled)
            # and bounded (a hung close must not hang shutdown).
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.call_timeout):
                await stack.aclose()
            log.info("kpo-finalizer %s stopped", self.instance_id)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None and not isinstance(exc, anyio.get_cancelled_exc_class()):
            self._failure = exc
            log.critical("kpo-finalizer failed, every waiting job gets an error: %r", exc)

    async def _run_or_join(self, spec: JobSpec) -> Outcome:
        """Start the job unless it is already running here; then wait for its outcome."""
        self._check_available()
        assert self._admission is not None
        return await self._admission.join(spec).result()

    async def _drain(self, grace: float) -> None:
        """Park the jobs (``Admission.park``), unregister so they are adoptable at once, stop."""
        if self._admission is not None:
            await self._admission.park(grace)
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
