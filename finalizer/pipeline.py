"""One finalization job: one idempotent step at a time, each recorded in the ledger.

    wait for completion (shared watch, level-based) ─► triage ─► read XCom (exec) ─► persist payload
    ─► [marker] ─► push XCom ─► container log ─► stop sidecar ─► [marker] ─► delete / keep+label ─► done

The container log goes to the trigger that opened a channel for the job (``finalizer.log_channel``):
whole after the end, or followed from the start with ``logging_interval`` (``finalizer.container_log``);
with no trigger in this process, a short tail rides in the outcome instead.

The read and the stop share one exec session (``ClusterOps.sidecar``): the shell that read the
XCom stays open while the payload is persisted and pushed, and the stop is one more line on it.

A job resumed after a crash (or adopted from a dead instance) continues after its last recorded
``Step`` and re-checks the world before acting: a pushed XCom is not read again, a pod that is
already gone counts as deleted, and a pod gone *before* the XCom was read is a FAILED outcome that
says so — never a success without the XCom. Each step's I/O is retried with
``api_client.backoff.retry_async`` as the classifier says; a lost compare-and-set
(``JobLostError``) stops the job at once. Payloads are never logged.

A batch/v1 Job (``spec.batch_job``) runs the same steps over its member pods in
``finalizer.batch_pipeline``; the per-pod steps both use are ``finalizer.pod_steps``.

Everything the pipeline touches comes in through narrow seams (``ClusterOps``, ``JobLedger``,
``XComSink`` in ``finalizer.seams``), so the service wires the real pieces and tests wire the
same real pieces.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api_client.backoff import Classifier
from finalizer.batch_pipeline import BatchPipeline
from finalizer.config import FinalizerConfig
from finalizer.container_log import ContainerLog, base_ended
from finalizer.decisions import marker, triage, xcom_push
from finalizer.decisions.outcome import failed, gone, needs_xcom, succeeds
from finalizer.exceptions import FinalizerError
from finalizer.jobs import JobSpec, Outcome, OutcomeKind, Step
from finalizer.ledger.records import JobRecord
from finalizer.log_channel import channel_for
from finalizer.metrics import METRICS, FinalizerMetrics
from finalizer.pod import PodView
from finalizer.pod_steps import PodSteps
from finalizer.progress import Progress, StepHook, StepReached
from finalizer.retry import StepCalls
from finalizer.seams import ClusterOps, JobLedger, PodWatch, SidecarOps, Slots, XComSink

log = logging.getLogger(__name__)

__all__ = ["Pipeline", "StepHook", "StepReached"]


def _now() -> datetime:
    return datetime.now(UTC)


#: After completion, how long a follow stream may take to reach the container's end (seconds).
FOLLOW_GRACE = 30.0


@dataclass(slots=True)
class _Logs:
    """The container log of one run. ``tail``: no trigger here shows it, the outcome carries the
    short tail; else a trigger opened a channel, and ``shipper`` writes to it (None: ``get_logs``
    is off, or an earlier run already wrote the log)."""

    tail: bool = True
    shipper: ContainerLog | None = None
    follower: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop the follower and wait for it; a cancellation of *this* task still propagates
        (``asyncio.wait`` does not swallow it), so a drain parks the job instead of going on."""
        follower = self.follower
        if follower is not None and not follower.done():
            follower.cancel()
            await asyncio.wait({follower})
        if follower is not None and follower.done() and not follower.cancelled():
            follower.exception()  # retrieved: the follower's own failure is not the job's


@dataclass(frozen=True, slots=True)
class _Read:
    """What the XCom step found: a value to persist (``read``), or a new outcome (``final``: stop)."""

    read: bool = False
    value: Any = None
    outcome: Outcome | None = None
    final: bool = False


class Pipeline:
    """Runs jobs; holds no per-job state, so one instance serves the whole finalizer."""

    def __init__(
        self,
        *,
        config: FinalizerConfig,
        cluster_for: Callable[[JobSpec], Awaitable[ClusterOps]],
        ledger: JobLedger,
        xcoms: XComSink,
        classify: Classifier,
        slots: Slots | None = None,
        on_step: StepHook | None = None,
        metrics: FinalizerMetrics = METRICS,
    ) -> None:
        self._config = config
        self._cluster_for = cluster_for
        self._ledger = ledger
        self._xcoms = xcoms
        self._slots = slots
        #: Awaited after each step reached (crash tests stop a job there).
        self._on_step = on_step
        self._metrics = metrics
        self._io = StepCalls.for_config(config, classify, metrics)
        self._steps = PodSteps(config, self._io, xcoms)
        self._batch = BatchPipeline(
            config=config, steps=self._steps, io=self._io, metrics=metrics, gate=self._gate
        )
        self._ledger_policy = config.ledger_policy()

    # -- plumbing -------------------------------------------------------------------------------

    def _progress(self, spec: JobSpec, rec: JobRecord) -> Progress:
        return Progress(spec, rec, self._ledger, self._ledger_policy, self._metrics, self._on_step)

    def _gate(self, spec: JobSpec) -> AbstractAsyncContextManager[Any]:
        return self._slots.slot(spec) if self._slots is not None else nullcontext()

    # -- the job --------------------------------------------------------------------------------

    async def run(self, spec: JobSpec, rec: JobRecord) -> Outcome:
        """Finish one job from wherever its record says it stopped; returns the final outcome."""
        if rec.step >= Step.DONE and rec.outcome is not None:
            return rec.outcome
        cluster = await self._cluster_for(spec)
        job = self._progress(spec, rec)
        if spec.batch_job is not None:  # a batch/v1 Job and its member pods
            return await self._batch.run(spec, cluster, job)
        # One subscription on the shared watch for the whole job: completion, then the pod's
        # current state for cleanup without another GET.
        async with cluster.watch(spec.pod) as sub:
            logs = self._logs(spec, rec, cluster, sub)
            try:
                return await self._run(spec, rec, cluster, job, sub, logs)
            finally:
                await logs.close()

    def _logs(self, spec: JobSpec, rec: JobRecord, cluster: ClusterOps, sub: PodWatch) -> _Logs:
        """The log goes to the trigger that opened a channel for this job; with ``logging_interval``
        one follow stream shows it while the pod runs."""
        channel = channel_for(spec.key)
        if channel is None:
            return _Logs()
        if not channel.want_logs or rec.step >= Step.DIAGNOSTICS_CAPTURED:
            return _Logs(tail=False)
        shipper = ContainerLog(cluster, spec.pod, channel, self._config.log_max_bytes)
        follower = None
        if channel.follow:
            follower = asyncio.get_running_loop().create_task(
                shipper.follow(sub), name=f"kpo-finalizer-log-{spec.pod.name}"
            )
        return _Logs(tail=False, shipper=shipper, follower=follower)

    async def _run(
        self, spec: JobSpec, rec: JobRecord, cluster: ClusterOps, job: Progress, sub: PodWatch, logs: _Logs
    ) -> Outcome:
        outcome = rec.outcome
        if rec.step < Step.COMPLETION_SEEN or outcome is None:
            completion, pod = await self._wait_for_completion(spec, sub)
            seen_at = _now()  # when the watch showed it, before any wait for a slot
            async with self._gate(spec):
                if pod is None:
                    outcome = await self._when_gone(spec, "disappeared")
                    return await self._done(job, outcome)
                outcome = triage.triage(completion, pod, spec.settings)
                await job.reach(Step.COMPLETION_SEEN, seen_at)
                outcome = await self._finish(job, cluster, sub, outcome, logs)
                self._metrics.completed_to_done(completion.finished_at)
                return outcome
        async with self._gate(spec):
            return await self._finish(job, cluster, sub, outcome, logs)

    async def _done(self, job: Progress, outcome: Outcome) -> Outcome:
        await job.commit(Step.DONE, outcome=outcome)
        self._metrics.finalized(outcome.kind.value)
        return outcome

    async def _finish(
        self, job: Progress, cluster: ClusterOps, sub: PodWatch, outcome: Outcome, logs: _Logs
    ) -> Outcome:
        """The steps after completion. Written to the ledger: the payload (before anything leaves
        the pod) and the end; the idempotent steps between are redone after a crash."""
        spec = job.spec
        marked: dict[str, Any] | None = None  # the marker this run wrote
        pushed = False  # this run pushed the return value (unknown on a resume past the push)
        # The read's exec session stays open until the stop, which then costs no new session.
        async with cluster.sidecar(spec.pod) as sidecar:
            if job.step < Step.XCOM_PERSISTED:
                read = await self._read_xcom(spec, sidecar, outcome)
                outcome = read.outcome or outcome
                if read.final:
                    return await self._done(job, outcome)
                fields: dict[str, Any] = {"xcom": read.value} if read.read else {}
                await job.commit(Step.XCOM_PERSISTED, outcome=outcome, **fields)
            if job.step < Step.XCOM_PUSHED:
                if marker.needed(outcome, return_value_pushed=True):
                    # Not a success: record it before its XCom, so that a stored return_value
                    # without a marker can only mean the success path (decisions/marker.py).
                    marked = await self._steps.write_marker(spec, outcome)
                outcome, pushed = await self._push_xcom(spec, job.rec, outcome)
                await job.reach(Step.XCOM_PUSHED)
            if job.step < Step.DIAGNOSTICS_CAPTURED:
                outcome = await self._diagnostics(spec, cluster, outcome, logs, sub)
                await job.reach(Step.DIAGNOSTICS_CAPTURED)
            if job.step < Step.SIDECAR_STOPPED:
                await self._stop_sidecar(spec, sidecar, outcome)
                await job.reach(Step.SIDECAR_STOPPED)
        if job.step < Step.POD_CLEANED:
            if marker.needed(outcome, return_value_pushed=pushed):
                await self._steps.write_marker(spec, outcome, unless=marked)
            await self._cleanup(spec, cluster, sub, outcome)
            await job.reach(Step.POD_CLEANED)
        return await self._done(job, outcome)

    # -- steps ----------------------------------------------------------------------------------

    async def _wait_for_completion(
        self, spec: JobSpec, sub: PodWatch
    ) -> tuple[triage.Completed, PodView | None]:
        """Level-based: a pod already finished or gone answers at once; start-up clocks apply."""
        rules = spec.startup
        started = rules.trigger_start or _now()

        def verdict(pod: PodView | None) -> triage.Pending | triage.Completed:
            return triage.assess(
                pod,
                base_container=spec.pod.base_container,
                now=_now(),
                trigger_start=started,
                schedule_timeout=rules.schedule_timeout,
                startup_timeout=rules.startup_timeout,
                execution_deadline=rules.execution_deadline,
                extra_fatal_reasons=spec.settings.fail_fast_waiting_reasons,
            )

        while True:
            # Until the first state arrives, look again every second: a pod that is already
            # Pending with a start-up clock running may never change again (H6: the schedule
            # timeout and execution deadline never fired with ``None`` here). Once it is known,
            # wake only for a clock: a Running pod without one waits for its next watch event
            # (a once-a-second look per watched pod was most of the steady-state CPU).
            timeout: float | None = 1.0
            if sub.known:
                current = verdict(sub.latest)  # latest is None once the pod is gone
                if isinstance(current, triage.Completed):
                    return current, sub.latest
                timeout = None
                if current.wake_at is not None:
                    timeout = max(0.0, (current.wake_at - _now()).total_seconds()) + 0.01
            try:
                pod = await sub.wait(lambda p: isinstance(verdict(p), triage.Completed), timeout)
            except TimeoutError:
                continue  # a start-up clock ran out: assess again
            final = verdict(pod)
            if isinstance(final, triage.Completed):
                return final, pod

    async def _when_gone(self, spec: JobSpec, why: str, outcome: Outcome | None = None) -> Outcome:
        """The pod is gone: the record of whoever finished it, if any, decides (``decisions.marker``)."""
        return gone(spec, why, outcome, await self._steps.recorded(spec))

    async def _read_xcom(self, spec: JobSpec, sidecar: SidecarOps, outcome: Outcome) -> _Read:
        if not needs_xcom(spec, outcome):
            return _Read()
        got = await self._steps.read_xcom(sidecar, spec.settings)
        if got.gone:
            return _Read(outcome=await self._when_gone(spec, "was deleted or evicted", outcome), final=True)
        if got.problem is not None:
            return _Read(outcome=failed(outcome, got.problem))
        return _Read(read=True, value=got.value)

    async def _push_xcom(self, spec: JobSpec, rec: JobRecord, outcome: Outcome) -> tuple[Outcome, bool]:
        """Push the planned XComs; also says whether the return value was among them."""
        if not needs_xcom(spec, outcome):
            return outcome, False
        if not rec.xcom_read:
            # Not read because it was rejected or unreadable: the outcome already says so.
            if not succeeds(outcome):
                return outcome, False
            return failed(outcome, "the XCom was never read (ledger record has no payload)"), False
        try:
            pushes = xcom_push.plan_pushes(rec.xcom_value, spec.settings, succeeded=succeeds(outcome))
        except xcom_push.PushRefused as exc:
            return failed(outcome, str(exc)), False
        await self._steps.push(spec, pushes)
        return outcome, any(push.key == xcom_push.RETURN_KEY for push in pushes)

    async def _diagnostics(
        self, spec: JobSpec, cluster: ClusterOps, outcome: Outcome, logs: _Logs, sub: PodWatch
    ) -> Outcome:
        """The container's log for the task log, best effort (a gone pod has none).

        With a trigger here: the whole log through its channel, nothing with ``get_logs=False``.
        A follow stream of a container that ended is given ``FOLLOW_GRACE`` to reach its end; one
        of a container still running (a timeout, an eviction) is stopped at once, and what it had
        not written yet is read in one go. Without a trigger: a bounded tail in the outcome, on
        success only with ``log_tail_on_success`` (the operator's ``get_logs``).
        """
        if not logs.tail:
            shipper = logs.shipper
            if shipper is None:
                return outcome
            if logs.follower is None:
                await shipper.ship_all()
                return outcome
            if base_ended(sub.latest, spec.pod.base_container):
                try:
                    await asyncio.wait_for(asyncio.shield(logs.follower), FOLLOW_GRACE)
                    if shipper.fell_back:
                        await shipper.ship_all()
                    return outcome
                except TimeoutError:
                    pass
                except Exception:  # a bug in the follower must not cost the task its outcome
                    log.warning("job %s: the log follower failed", spec.key, exc_info=True)
            await logs.close()
            await shipper.catch_up()
            return outcome
        settings = spec.settings
        if settings.log_tail_lines == 0 or settings.log_tail_bytes == 0:
            return outcome
        if succeeds(outcome) and not settings.log_tail_on_success:
            return outcome
        try:
            tail = await self._io(
                "read log tail",
                "diagnostics",
                lambda: cluster.log_tail(spec.pod, settings.log_tail_lines, settings.log_tail_bytes),
            )
        except FinalizerError as exc:
            log.warning("job %s: no log tail (%s)", spec.key, type(exc).__name__)
            return outcome
        return outcome.model_copy(update={"log_tail": tail})

    async def _stop_sidecar(self, spec: JobSpec, sidecar: SidecarOps, outcome: Outcome) -> None:
        """Let the pod reach a terminal phase; failure is only a warning (as upstream)."""
        if not spec.settings.do_xcom_push or outcome.kind is OutcomeKind.FALLBACK:
            return
        await self._steps.stop_sidecar(spec.key, sidecar)

    async def _cleanup(self, spec: JobSpec, cluster: ClusterOps, sub: PodWatch, outcome: Outcome) -> None:
        """``on_finish_action`` on the pod as it is now: delete (uid precondition) or keep + label.

        The watch's latest state is current enough for the decision (phase, exit code); a GET only
        when the watch has not seen the pod yet (a resumed job, before the first LIST answered).
        """
        pod = sub.latest if sub.known else await self._steps.current(cluster, spec.pod)
        await self._steps.cleanup(spec.key, cluster, spec.pod, pod, spec.settings, outcome)
