"""Which jobs this instance runs: the job table, the claim in the ledger, adoption, the queue bound.

- **Job table.** One entry per job key: a trigger re-run that submits the same key joins the work
  already under way instead of starting it twice.
- **Claim.** A job runs here only once the ledger says we own it. While a live instance owns it,
  we follow it (poll) and never run it ourselves: instances do not take over each other's live
  work. A DONE job answers with its recorded outcome.
- **Adoption.** Jobs whose owner's heartbeat is older than ``stale_threshold`` are taken over,
  never one handed to the worker path. The rule that makes this hold (docs/reliability.md):
  an instance adopts nothing until the ledger has been reachable to it for a full
  ``stale_threshold`` (at its start and after each of its ledger failures). Every owner writes its
  pending hand-overs before each heartbeat (``upkeep.heartbeat``), so within that window every
  live owner that reaches the ledger has written its marks, and an owner still stale after it is
  dead (its classic triggers died with it; Airflow re-runs them, through us again). Pending
  hand-overs are written first in each round (a round is skipped while they cannot be). Before an
  adopted job acts, its try is checked: a newer try of the task in the ledger, or Airflow not
  saying DEFERRED, marks it handed over and leaves its pod alone; while Airflow cannot be asked,
  the claim is kept (no release, no re-adoption churn) and Airflow is asked again with backoff.
- **Queue bound.** At most ``queue_bound`` jobs are tracked (waiting for their pod or running);
  further submissions wait for room, before they are even written to the ledger.

Jobs run in the service's task group; the pipeline that runs them is passed in, and learns
nothing about this table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from finalizer import handover
from finalizer.config import FinalizerConfig
from finalizer.exceptions import (
    FinalizerError,
    FinalizerUnavailableError,
    JobHandedOverError,
    LedgerError,
)
from finalizer.handover import PendingHandovers
from finalizer.jobs import JobSpec, Outcome, Step
from finalizer.ledger.records import JobRecord
from finalizer.limiter import ClusterLimiter
from finalizer.retry import ledger_call
from finalizer.seams import ServiceLedger, TaskState
from finalizer.upkeep import Reachability

log = logging.getLogger(__name__)

#: The first wait before Airflow is asked again about an adopted job, seconds (doubling).
ASK_BACKOFF = 1.0
#: The longest wait between two questions to Airflow about one adopted job, seconds.
ASK_BACKOFF_MAX = 30.0

#: Runs one claimed job to its outcome (``Pipeline.run``).
RunJob = Callable[[JobSpec, JobRecord], Awaitable[Outcome]]


@dataclass(eq=False)
class TrackedJob:
    """One job in the table: its result once known, and the scope that parks it on drain."""

    spec: JobSpec
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None
    error: BaseException | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def finish(self, outcome: Outcome | None = None, error: BaseException | None = None) -> None:
        """The first result wins; later ones are ignored."""
        if self.done.is_set():
            return
        self.outcome, self.error = outcome, error
        self.done.set()

    async def result(self) -> Outcome:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


class Admission:
    """The job table of one running finalizer instance (lives on the finalizer's loop)."""

    def __init__(
        self,
        config: FinalizerConfig,
        ledger: ServiceLedger,
        owner: str,
        run: RunJob,
        limiter: ClusterLimiter,
        tg: anyio.abc.TaskGroup,
        *,
        ended: Callable[[], FinalizerError],
        handovers: PendingHandovers | None = None,
        task_state: TaskState | None = None,
        reach: Reachability | None = None,
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._owner = owner
        self._run = run
        self._limiter = limiter
        self._tg = tg
        #: The error a job gets when it ends without an outcome (parked, or the loop failed).
        self._ended = ended
        self._handovers = handovers if handovers is not None else PendingHandovers()
        self._task_state = task_state
        #: The ledger's reachability to us: no adoption before a full ``stale_threshold`` of it.
        self.reach = reach if reach is not None else Reachability()
        self._quiet_logged = False
        self._capacity = anyio.CapacityLimiter(config.queue_bound)
        self._jobs: dict[str, TrackedJob] = {}
        self.draining = False
        self.done_count = 0

    @property
    def watching(self) -> int:
        """Jobs waiting for their pod to complete (tracked, neither queued for a slot nor in one)."""
        return max(0, len(self._jobs) - self._limiter.queued - self._limiter.in_flight)

    def join(self, spec: JobSpec) -> TrackedJob:
        """The job under ``spec.key``: the one already running here, or a new one started now."""
        reason = self._handovers.reason(spec.key)
        if reason is not None:
            refused = TrackedJob(spec)
            refused.finish(
                error=JobHandedOverError(f"job {spec.key} was handed to the worker path: {reason}")
            )
            return refused
        job = self._jobs.get(spec.key)
        if job is None:
            job = self._track(spec)
            self._tg.start_soon(self._run_job, job, None)
        return job

    def hand_over(self, key: str, reason: str) -> None:
        """The job's task went to the worker: stop the job here now, whatever step it is at."""
        job = self._jobs.get(key)
        if job is not None:
            job.finish(error=JobHandedOverError(f"job {key} was handed to the worker path: {reason}"))
            job.scope.cancel()

    def _track(self, spec: JobSpec) -> TrackedJob:
        job = TrackedJob(spec)
        self._jobs[spec.key] = job
        return job

    async def adopt_forever(self) -> None:
        """Take over jobs of instances whose heartbeat is older than the stale threshold."""
        while not self.draining:
            room = self._config.queue_bound - len(self._jobs)
            if room > 0:
                records = await self._adoption_round(room)
                adopted = 0
                for rec in records:
                    if rec.spec.key in self._jobs:
                        continue
                    log.debug("kpo-finalizer %s adopted job %s at %s", self._owner, rec.key, rec.step.name)
                    self._tg.start_soon(self._run_job, self._track(rec.spec), rec, True)
                    adopted += 1
                if adopted:
                    log.info("kpo-finalizer %s adopted %d stale job(s)", self._owner, adopted)
            await anyio.sleep(self._config.adopt_interval)

    async def _adoption_round(self, room: int) -> list[JobRecord]:
        try:
            # Hand-overs first: a job given to the worker must be marked before we adopt.
            await handover.flush(self._handovers, self._ledger)
            steady = self.reach.steady_for()
            if steady < self._config.stale_threshold:
                if not self._quiet_logged:
                    log.info(
                        "kpo-finalizer %s adopts nothing until the ledger has answered it for %gs "
                        "(stale_threshold): every live owner writes its hand-overs in that time",
                        self._owner,
                        self._config.stale_threshold,
                    )
                    self._quiet_logged = True
                return []
            self._quiet_logged = False
            records = await self._ledger.adopt_stale(
                self._owner, threshold=self._config.stale_threshold, limit=room
            )
        except LedgerError as exc:
            self.reach.failed()
            log.warning("kpo-finalizer adoption failed (%s); will retry", type(exc).__name__)
            return []
        self.reach.ok()
        return list(records)

    async def _run_job(self, job: TrackedJob, rec: JobRecord | None, adopted: bool = False) -> None:
        spec = job.spec
        try:
            with job.scope:
                if adopted and rec is not None and not await self._confirm(job, rec):
                    return
                async with self._capacity:
                    if rec is None:
                        rec = await self._claim(spec)
                    outcome = await self._run(spec, rec)
                self.done_count += 1
                job.finish(outcome=outcome)
        except FinalizerError as exc:
            log.warning("kpo-finalizer job %s ended with %s: %s", spec.key, type(exc).__name__, exc)
            job.finish(error=exc)
        except Exception as exc:
            log.exception("kpo-finalizer job %s crashed", spec.key)
            job.finish(error=FinalizerUnavailableError(f"job {spec.key} crashed: {exc!r}"))
        finally:
            job.finish(error=self._ended())
            if self._jobs.get(spec.key) is job:
                del self._jobs[spec.key]

    async def _confirm(self, job: TrackedJob, rec: JobRecord) -> bool:
        """Before an adopted job acts: is THIS try still DEFERRED? If not, it went to a worker (or a
        newer try runs) without a mark in the ledger: mark it now, leave its pod, end the job.

        The try: Airflow's state carries none, so a newer try of the same task in the ledger says
        this one is over. Airflow (or the ledger) unreachable: keep the claim (we heartbeat, so
        nobody else adopts it, and a trigger of it elsewhere follows us) and ask again."""
        if self._task_state is None:
            return True
        state = await self._ask(rec)
        if state == "deferred":
            return True
        reason = (
            f"an adopter found the task {state or 'unknown to Airflow'}, not DEFERRED for try "
            f"{rec.spec.ti.try_number}: it belongs to the worker, its pod is not touched"
        )
        log.warning("kpo-finalizer job %s: %s", rec.key, reason)
        await self._quietly(self._ledger.hand_over(rec.key, reason))
        job.finish(error=JobHandedOverError(f"job {rec.key} was handed to the worker path: {reason}"))
        return False

    async def _ask(self, rec: JobRecord) -> str | None:
        """The job's try as the ledger and Airflow see it, asked until both answer (backoff
        ``ASK_BACKOFF`` doubling up to ``ASK_BACKOFF_MAX``): ``"deferred"`` when it may act."""
        assert self._task_state is not None
        wait, failures, since = ASK_BACKOFF, 0, time.monotonic()
        while True:
            side = "the ledger"  # the side asked, named in the log (a timeout names neither)
            try:
                with anyio.fail_after(self._config.call_timeout):
                    newer = await self._ledger.newer_try(rec.spec)
                    if newer is not None:
                        return f"superseded by try {newer}"
                    side = "Airflow"
                    return await self._task_state(rec.spec)
            except Exception as exc:
                failures += 1
                # One WARNING per job, then DEBUG: an outage of Airflow must not flood the log.
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "kpo-finalizer could not check adopted job %s with %s (%s: %s; %d attempt(s) in "
                    "%.0fs); the claim is kept, asked again in %.0fs",
                    rec.key,
                    side,
                    type(exc).__name__,
                    exc,
                    failures,
                    time.monotonic() - since,
                    wait,
                )
            await anyio.sleep(wait)
            wait = min(ASK_BACKOFF_MAX, wait * 2)

    @staticmethod
    async def _quietly(write: Awaitable[object]) -> None:
        try:
            await write
        except LedgerError as exc:
            log.warning("kpo-finalizer ledger write failed (%s); the next round tries again", exc)

    async def _claim(self, spec: JobSpec) -> JobRecord:
        """Our record of the job. While another live instance owns it, follow it: never run it twice.

        ``submit`` returns a DONE job as is and adopts one whose owner died; otherwise we poll.
        """
        policy = self._config.ledger_policy()
        while True:
            rec = await ledger_call(
                f"job {spec.key}: claiming it", lambda: self._ledger.submit(spec, self._owner), policy
            )
            if rec.handed_over_at is not None:
                raise JobHandedOverError(
                    f"job {spec.key} was handed to the worker path at {rec.handed_over_at:%Y-%m-%d %H:%M:%S} "
                    f"UTC ({rec.error}): its pod is the worker's"
                )
            if rec.owner == self._owner or rec.step >= Step.DONE:
                return rec
            log.debug("job %s is being finalized by live instance %s; following it", spec.key, rec.owner)
            await anyio.sleep(self._config.heartbeat_interval)

    async def park(self, grace: float) -> None:
        """Refuse new work; give jobs holding a slot ``grace`` s; cancel (park) everything else."""
        self.draining = True
        for job in list(self._jobs.values()):
            if not self._limiter.holds_slot(job.spec.key):
                job.scope.cancel()  # watching or queued: parked in the ledger as it is
        with anyio.move_on_after(grace):
            for job in list(self._jobs.values()):
                await job.done.wait()  # only active jobs are left running
        for job in list(self._jobs.values()):
            job.scope.cancel()

    def end_all(self) -> None:
        """Every job still tracked gets the ended error (the loop is going away)."""
        for job in list(self._jobs.values()):
            job.finish(error=self._ended())
        self._jobs.clear()
