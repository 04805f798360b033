"""A batch/v1 Job's finalization: the same steps and ledger as a KPO pod, over many member pods.

    per member, as its base container ends: read XCom ─► persist it (CAS) ─► stop sidecar
    Job terminal, every member read ─► outcome ─► [marker] ─► push job + return_value
    ─► members' logs ─► stop any sidecar left ─► [marker] ─► cleanup pods, delete Job if asked ─► done

The members are the Job's pods by its controller-uid (``MemberWatch``), so retries and pods made
after the trigger started are read too; a member's sidecar must be stopped before the controller
counts it, so the Job can only end after the reads. Each member read is its own compare-and-set
durability point: the reads so far sit in the job's ledger payload (``{"members": {uid: …}}``,
written at ``REGISTERED``), so a resumed job reads no member twice. ``XCOM_PERSISTED`` adds the
outcome and the final Job (the ``job`` XCom); every step after it is idempotent, as for a pod.
The rules (which members, order, outcome, pushes, Job delete) are ``decisions.batch``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from finalizer.batch_job import BatchJobView
from finalizer.batch_members import MEMBER_READS, Members, cancel, current, gone, member_ref, stored
from finalizer.config import FinalizerConfig
from finalizer.container_log import ContainerLog
from finalizer.decisions import batch, marker, xcom_push
from finalizer.decisions.batch import MemberRead
from finalizer.decisions.outcome import failed, succeeds
from finalizer.exceptions import PodNotFoundError
from finalizer.jobs import BatchJobRef, JobSpec, Outcome, PodRef, Step
from finalizer.log_channel import channel_for
from finalizer.metrics import FinalizerMetrics
from finalizer.pod import PodView
from finalizer.pod_steps import PodSteps
from finalizer.progress import Progress
from finalizer.retry import StepCalls
from finalizer.seams import BatchJobWatch, ClusterOps, MemberWatch

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _changed_from(seen: BatchJobView | None) -> Callable[[BatchJobView], bool]:
    """A predicate for the Job's next state after ``seen`` (any state while none was seen)."""
    version = None if seen is None else seen.resource_version
    return lambda job: job.resource_version != version


def final_job(jw: BatchJobWatch) -> BatchJobView | None:
    """The Job as it is; once gone, its last state if that was terminal (``ttlSecondsAfterFinished``
    0 deletes it as it finishes), else None: deleted before it finished."""
    if jw.latest is not None:
        return jw.latest
    last = jw.last_seen
    return last if jw.gone and last is not None and last.terminal is not None else None


@dataclass(slots=True)
class _Run:
    """One run of one batch job: what every step works on."""

    spec: JobSpec
    ref: BatchJobRef
    cluster: ClusterOps
    job: Progress
    mw: MemberWatch
    state: Members
    #: The rest of the payload once the outcome is known: ``job`` (dict), ``terminal``, ``indexed``.
    extra: dict[str, Any] = field(default_factory=dict)

    def reads(self) -> list[MemberRead]:
        return batch.ordered(self.state.reads.values(), indexed=bool(self.extra.get("indexed")))


class BatchPipeline:
    """Runs batch jobs for ``Pipeline`` (which dispatches here on ``spec.batch_job``)."""

    def __init__(
        self,
        *,
        config: FinalizerConfig,
        steps: PodSteps,
        io: StepCalls,
        metrics: FinalizerMetrics,
        gate: Callable[[JobSpec], AbstractAsyncContextManager[Any]],
    ) -> None:
        self._config = config
        self._steps = steps
        self._io = io
        self._metrics = metrics
        self._gate = gate

    async def run(self, spec: JobSpec, cluster: ClusterOps, job: Progress) -> Outcome:
        ref = spec.batch_job
        assert ref is not None
        reads, extra = stored(job.rec.xcom_value)
        async with cluster.watch_batch_job(ref) as jw, cluster.watch_members(ref) as mw:
            run = _Run(spec, ref, cluster, job, mw, Members(reads), extra)
            outcome = job.rec.outcome
            if job.step < Step.COMPLETION_SEEN or outcome is None:
                try:
                    outcome, view, terminal = await self._collect(run, jw)
                finally:
                    await cancel(run.state.tasks.values())
                seen_at = _now()
                # Not a success now (members or the Job gone …): an earlier run of this try may have
                # finished it (another triggerer, a lost ledger row): its record decides, as for a pod.
                if not succeeds(outcome) and (recorded := await self._steps.recorded(spec)) is not None:
                    # That run may have ended before its cleanup: the pods (and the Job) still get theirs.
                    run.extra = {"terminal": view is None or view.terminal is not None}
                    async with self._gate(spec):
                        await self._cleanup(run, await current(mw), recorded)
                    return await self._done(job, recorded)
                run.extra = {
                    "job": cluster.batch_job_dict(view) if view is not None else None,
                    "terminal": terminal,
                    "indexed": view is not None and view.indexed,
                }
                async with self._gate(spec):
                    await job.reach(Step.COMPLETION_SEEN, seen_at)
                    await job.commit(
                        Step.XCOM_PERSISTED, outcome=outcome, xcom={**run.state.payload(), **run.extra}
                    )
                    outcome = await self._finish(run, outcome)
                    self._metrics.completed_to_done(view.completion_time if view is not None else None)
                    return outcome
            async with self._gate(spec):
                return await self._finish(run, outcome)

    async def _done(self, job: Progress, outcome: Outcome) -> Outcome:
        await job.commit(Step.DONE, outcome=outcome)
        self._metrics.finalized(outcome.kind.value)
        return outcome

    # -- until the Job is terminal and every ended member is read ---------------------------------

    async def _collect(self, run: _Run, jw: BatchJobWatch) -> tuple[Outcome, BatchJobView | None, bool]:
        """Read members as they end; returns the outcome, the final Job (None: gone), terminal.

        Level-based: it wakes on any change of the Job or of a member (or a read ending) and looks
        at both as they are then, so no order of the two watches' first LISTs leaves it asleep."""
        spec, mw, state = run.spec, run.mw, run.state
        push = spec.settings.do_xcom_push
        deadline = spec.startup.execution_deadline
        bound = asyncio.Semaphore(MEMBER_READS)
        job_wait: asyncio.Task[BatchJobView | None] | None = None
        member_wait: asyncio.Task[None] | None = None
        try:
            while True:
                if job_wait is None and not jw.gone:
                    job_wait = asyncio.ensure_future(jw.wait(_changed_from(jw.latest), None))
                if member_wait is None:
                    member_wait = asyncio.ensure_future(mw.changed(None))
                if jw.known and mw.known:
                    view = final_job(jw)
                    if view is None:
                        return batch.outcome(spec, None, state.reads.values()), None, False
                    if push and (missing := batch.without_sidecar(mw.members)) is not None:
                        return batch.outcome(spec, view, (), missing_sidecar=missing.name), view, False
                    fatal = spec.settings.fail_fast_waiting_reasons
                    if view.terminal is None and (why := batch.start_failure(mw.members, fatal)):
                        return batch.outcome(spec, view, (), start_failed=why), view, False
                    if push:
                        self._start_members(run, bound)
                    if view.terminal is not None and not state.tasks:
                        went = gone(mw, state)
                        state.reads = batch.replaced(state.reads, went)
                        lost = batch.lost(went, state.reads) if push else []
                        return batch.outcome(spec, view, state.reads.values(), lost_members=lost), view, True
                left = None if deadline is None else (deadline - _now()).total_seconds()
                if left is not None and left <= 0:
                    past = batch.outcome(spec, jw.latest, state.reads.values(), past_deadline=True)
                    return past, jw.latest, False
                waits: set[asyncio.Future[Any]] = {member_wait, *state.tasks.values()}
                if job_wait is not None:
                    waits.add(job_wait)
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                for uid, task in list(state.tasks.items()):
                    if task.done():
                        del state.tasks[uid]
                        task.result()  # a member's JobLostError (or a bug) ends the job
                if member_wait.done():
                    member_wait.result()
                    member_wait = None
                if job_wait is not None and job_wait.done():
                    job_wait.result()  # raises when the Job watch cannot serve it (e.g. 403)
                    job_wait = None
        finally:
            await cancel(t for t in (job_wait, member_wait) if t is not None)

    def _start_members(self, run: _Run, bound: asyncio.Semaphore) -> None:
        """A task per ended member not read yet, or read but with its sidecar still running."""
        state, base = run.state, run.ref.base_container
        for uid, pod in run.mw.members.items():
            if uid in state.tasks or uid in state.vanished or not batch.ended(pod, base):
                continue
            if uid in state.reads and (uid in state.stopped or not pod.has_running_sidecar()):
                continue
            state.tasks[uid] = asyncio.ensure_future(self._member(run, pod, bound))

    async def _member(self, run: _Run, pod: PodView, bound: asyncio.Semaphore) -> None:
        """Read one member's XCom, persist it, stop its sidecar: one exec session."""
        state, uid = run.state, pod.uid
        async with bound:
            try:
                async with run.cluster.sidecar(member_ref(run.ref, pod)) as sidecar:
                    if uid not in state.reads:
                        got = await self._steps.read_xcom(sidecar, run.spec.settings)
                        if got.gone:
                            state.vanished.add(uid)
                            return
                        read = MemberRead(
                            uid=uid,
                            name=pod.name,
                            index=batch.completion_index(pod),
                            exit_code=batch.base_exit(pod, run.ref.base_container),
                            value=got.value,
                            problem=got.problem,
                        )
                        async with state.lock:  # one write at a time, each holding every read so far
                            state.reads[uid] = read
                            await run.job.commit(Step.REGISTERED, xcom=state.payload())
                    # Not stopped (a warning): tried again, the Job cannot end while its sidecar runs.
                    if await self._steps.stop_sidecar(run.spec.key, sidecar):
                        state.stopped.add(uid)
            except PodNotFoundError:
                state.vanished.add(uid)

    # -- after the outcome: the same steps as a pod's, each idempotent ------------------------------

    async def _finish(self, run: _Run, outcome: Outcome) -> Outcome:
        job, spec = run.job, run.spec
        marked: dict[str, Any] | None = None
        pushed = False  # unknown on a resume past the push: then the marker is written
        if job.step < Step.XCOM_PUSHED:
            if marker.needed(outcome, return_value_pushed=True):
                marked = await self._steps.write_marker(spec, outcome)
            outcome, pushed = await self._push(run, outcome)
            await job.reach(Step.XCOM_PUSHED)
        if job.step < Step.DIAGNOSTICS_CAPTURED:
            await self._logs(run)
            await job.reach(Step.DIAGNOSTICS_CAPTURED)
        members = await current(run.mw)
        if job.step < Step.SIDECAR_STOPPED:
            if spec.settings.do_xcom_push:  # a resumed job's member may still be up (crash before its stop)
                for pod in members.values():
                    if pod.has_running_sidecar():
                        async with run.cluster.sidecar(member_ref(run.ref, pod)) as sidecar:
                            await self._steps.stop_sidecar(spec.key, sidecar)
            await job.reach(Step.SIDECAR_STOPPED)
        if job.step < Step.POD_CLEANED:
            if marker.needed(outcome, return_value_pushed=pushed):
                await self._steps.write_marker(spec, outcome, unless=marked)
            await self._cleanup(run, members, outcome)
            await job.reach(Step.POD_CLEANED)
        return await self._done(job, outcome)

    async def _push(self, run: _Run, outcome: Outcome) -> tuple[Outcome, bool]:
        """``job`` (always, as upstream's execute_complete), then the list on success; also says
        whether ``return_value`` was among them."""
        settings, final = run.spec.settings, run.extra.get("job")
        pushes = [xcom_push.Push(batch.JOB_KEY, final)] if final is not None else []
        if settings.do_xcom_push and succeeds(outcome):
            indexed = bool(run.extra.get("indexed"))
            value = batch.return_value(run.reads(), indexed=indexed, unwrap_single=run.ref.unwrap_single)
            try:
                pushes += xcom_push.plan_pushes(value, settings)
            except xcom_push.PushRefused as exc:
                outcome = failed(outcome, str(exc))
        await self._steps.push(run.spec, pushes)
        return outcome, any(p.key == xcom_push.RETURN_KEY for p in pushes)

    async def _logs(self, run: _Run) -> None:
        """Each member's log in member order, as upstream's execute_complete (``get_logs``)."""
        channel = channel_for(run.spec.key)
        if channel is None or not channel.want_logs:
            return
        for read in run.reads():
            shown = PodRef(
                namespace=run.ref.namespace,
                name=read.name,
                uid=read.uid,
                base_container=run.ref.base_container,
            )
            await ContainerLog(run.cluster, shown, channel, self._config.log_max_bytes).ship_all()

    async def _cleanup(self, run: _Run, members: dict[str, PodView], outcome: Outcome) -> None:
        """``on_finish_action`` per member as it is now, then the Job's delete if one is due."""
        ref, settings = run.ref, run.spec.settings
        for uid, pod in sorted(members.items(), key=lambda item: item[1].name):
            own = batch.member_outcome(outcome, run.state.reads.get(uid), pod, ref.base_container)
            await self._steps.cleanup(run.spec.key, run.cluster, member_ref(ref, pod), pod, settings, own)
        policy = batch.job_delete(ref, terminal=bool(run.extra.get("terminal", True)))
        if policy is not None:
            deleted = await self._io(
                "delete Job",
                "cleanup",
                lambda: run.cluster.delete_batch_job(ref, policy, settings.termination_grace_period),
            )
            log.debug("job %s: Job deleted (%s)%s", run.spec.key, policy, "" if deleted else ", already gone")
