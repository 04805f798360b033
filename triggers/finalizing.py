"""What ``FinalizingPodTrigger`` and ``FinalizingJobTrigger`` share: the path choice, the run, the exits.

A finalizing trigger is an upstream trigger (``KubernetesPodTrigger``, ``KubernetesJobTrigger``)
with this mixin listed first. ``run()`` either hands its workload to the process-wide finalizer
and yields a task-end event, or takes the classic path (the upstream ``run()``, so the worker's
re-entry method gets the event it knows) with the reason in the trigger log: a disabled or invalid
policy, no uid, no task instance, a job that cannot be built, a finalizer that cannot run.

Restart is not kill: ``cleanup()`` (every exit, including triggerer shutdown and reassignment)
never deletes; ``on_kill()`` deletes only after Airflow confirms the task left DEFERRED.

A subclass says what its workload is (``workload``, ``_where``, ``_uid``), builds the
``JobSpec`` (``job_spec``), maps an outcome to its event (``_end_event``), runs the upstream
path (``_classic_run``) and deletes on a user kill (``_kill_kept``, ``_delete_on_kill``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from finalizer.exceptions import ConfigurationError, FinalizerError
from finalizer.jobs import JobSpec, Outcome, TaskInstanceRef
from triggers import config_check
from triggers.events import EventPlan
from triggers.policy import FinalizationPolicy
from triggers.runtime import hand_over
from triggers.task_log import finalize_with_log

#: Bound on each step of on_kill (task-state query, delete), seconds.
ON_KILL_STEP_TIMEOUT = 60.0

#: on_kill work in flight (strong references: the loop keeps only weak ones to tasks).
_KILLS: set[asyncio.Task[None]] = set()


def task_instance_ref(ti: Any) -> TaskInstanceRef:
    """The try a trigger's ``task_instance`` names (the ledger's key and the XCom coordinates)."""
    return TaskInstanceRef(
        id=str(ti.id),
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=int(ti.map_index if ti.map_index is not None else -1),
        try_number=int(ti.try_number or 1),
    )


def end_event(plan: EventPlan) -> TriggerEvent:
    """The event a plan names: Airflow's task-end events, or the classic payload (re-entry)."""
    if plan.action == "success":
        return TaskSuccessEvent()
    if plan.action == "failed":
        return TaskFailedEvent()
    if plan.action == "skipped":
        return TaskSkippedEvent()
    return TriggerEvent(plan.payload)


class FinalizingTrigger:
    """The shared half of a finalizing trigger; list it before the upstream trigger class."""

    #: What one trigger finishes, for log lines ("pod", "Job").
    workload = "pod"

    log: logging.Logger
    finalization: FinalizationPolicy
    worker_outcomes: dict[str, str]
    #: The finalizer job once ``run`` chose the finalizing path (``on_kill`` deletes by its uid).
    _job: JobSpec | None
    _fired_event: bool

    # -- what the subclass supplies --------------------------------------------------------

    def _where(self) -> tuple[str, str]:
        """Namespace and name of the workload."""
        raise NotImplementedError

    def _uid(self) -> str | None:
        raise NotImplementedError

    def _classic_extra(self) -> str | None:
        """A subclass's own reason for the classic path (checked after the policy)."""
        return None

    def job_spec(self, policy: FinalizationPolicy) -> JobSpec:
        raise NotImplementedError

    def _get_logs(self) -> tuple[bool, bool]:
        """``(get_logs, follow)`` for ``finalize_with_log``."""
        raise NotImplementedError

    def _end_plan(self, outcome: Outcome, to_worker: bool) -> EventPlan:
        raise NotImplementedError

    def _classic_run(self) -> AsyncIterator[TriggerEvent]:
        """The upstream trigger's own ``run()``."""
        raise NotImplementedError

    def _kill_kept(self) -> str | None:
        """Why ``on_kill`` deletes nothing without asking Airflow (``keep_pod``), or None."""
        return None

    async def _delete_on_kill(self) -> str:
        """Delete what a user kill deletes; says how (for the log)."""
        raise NotImplementedError

    if TYPE_CHECKING:  # the upstream trigger's (KPO's): not shadowed here, the mixin comes first

        async def get_task_state(self) -> Any: ...

    # -- the path ----------------------------------------------------------------------------

    def _classic_reason(self) -> tuple[FinalizationPolicy | None, str | None]:
        """Resolve the policy; say why this task must take the classic path, if it must."""
        try:
            policy = self.finalization.resolve()
        except ConfigurationError as exc:
            return None, f"the finalization policy is invalid ({exc})"
        if not policy.is_enabled:
            return policy, "finalization is disabled by the policy"
        extra = self._classic_extra()
        if extra is not None:
            return policy, extra
        if not self._uid():
            return policy, f"the trigger was created without the {self.workload} uid"
        if getattr(self, "task_instance", None) is None:
            return policy, "the trigger has no task instance"
        return policy, None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # [kpo_finalizer] problems at ERROR in the triggerer's log, once; off the loop (it reads config)
        await config_check.report_once_off_loop()
        policy, classic = self._classic_reason()
        if classic is None and policy is not None:
            try:
                job = self.job_spec(policy)
            except (ConfigurationError, ValueError, TypeError) as exc:
                classic = f"the finalization job could not be built ({exc})"
        if classic is not None or policy is None:
            self.log.info(
                "kpo-finalizer: classic path for %s %s/%s: %s", self.workload, *self._where(), classic
            )
            async for event in self._classic_run():
                yield event
            return

        self._job = job
        # DEBUG: Airflow already logs each trigger's start, and every line crosses the busy
        # supervisor; the outcome line says how the finalizer ended the task.
        self.log.debug(
            "kpo-finalizer: finishing %s %s/%s (uid %s) in the triggerer",
            self.workload,
            *self._where(),
            self._uid(),
        )
        get_logs, follow = self._get_logs()
        try:
            outcome = await finalize_with_log(job, self.log, get_logs=get_logs, follow=follow)
        except Exception as exc:
            # FinalizerError: the finalizer cannot run or lost the job. Anything else is a bug,
            # logged with its traceback; either way the classic path loses nothing.
            self.log.error(
                "kpo-finalizer could not finish %s %s/%s (%s: %s); handing the task to the worker "
                "(classic path)",
                self.workload,
                *self._where(),
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, FinalizerError),
            )
            # The workload is the worker's now: no finalizer may adopt and act on this job (issue 13).
            await hand_over(job, f"the trigger took the classic path: {type(exc).__name__}: {exc}")
            async for event in self._classic_run():
                yield event
            return

        kind = outcome.kind.value
        plan = self._end_plan(outcome, bool(policy.fallback_to_worker) or kind in self.worker_outcomes)
        if plan.action == "reentry" and kind in self.worker_outcomes:
            self.log.info("kpo-finalizer: the worker ends the task: %s", self.worker_outcomes[kind])
        self._log_outcome(plan.action, kind, outcome.reason, outcome.log_tail)
        self._fired_event = True
        yield end_event(plan)

    def _log_outcome(self, action: str, kind: str, reason: str, log_tail: str | None) -> None:
        """The reason goes to the trigger log, which Airflow shows in the task log."""
        if action == "success":
            self.log.info("kpo-finalizer: task succeeded: %s", reason)
        elif action == "skipped":
            self.log.info("kpo-finalizer: task skipped: %s", reason)
        elif action == "failed":
            self.log.error("kpo-finalizer: task failed: %s", reason)
        else:  # configured (fallback_to_worker, worker_outcomes, fail-fast): expected, so INFO
            self.log.info("kpo-finalizer: outcome %s handed to the worker: %s", kind, reason)
        if log_tail:  # on success only with get_logs (the pipeline reads it only then)
            self.log.info("kpo-finalizer: last lines of the base container's log:\n%s", log_tail)

    # -- exits ----------------------------------------------------------------------------------

    async def on_kill(self) -> None:
        """A user action (mark success/failed, clear): delete — if really killed.

        A triggerer that lost its triggers also cancels its stale copies through ``on_kill``, so
        nothing is deleted unless Airflow says the task is no longer DEFERRED.

        The work runs in its own task, shielded: Airflow 3.3.2's supervisor repeats the cancel
        request on every sync (about once a second) until the trigger has finished, which would
        otherwise interrupt the state check or the delete half-way.
        """
        if self._fired_event:
            self.log.debug("on_kill: an event was already fired; nothing to do")
            return
        kept = self._kill_kept()
        if kept is not None:
            self.log.info("on_kill: %s", kept)
            return
        task = asyncio.get_running_loop().create_task(
            self._kill_if_user_action(), name="kpo-finalizer-on-kill"
        )
        _KILLS.add(task)
        task.add_done_callback(_KILLS.discard)
        await asyncio.shield(task)

    async def _kill_if_user_action(self) -> None:
        what = self.workload
        try:
            state = await asyncio.wait_for(self.get_task_state(), ON_KILL_STEP_TIMEOUT)
        except Exception:
            self.log.warning(
                "on_kill: could not read the task state; %s kept to be safe", what, exc_info=True
            )
            return
        if state == "deferred":
            self.log.info(
                "on_kill: the task is still DEFERRED (a triggerer restart or reassignment, not a user "
                "action); %s %s/%s kept",
                what,
                *self._where(),
            )
            return
        self.log.info("on_kill: task is %s; deleting %s %s/%s", state, what, *self._where())
        try:
            how = await asyncio.wait_for(self._delete_on_kill(), ON_KILL_STEP_TIMEOUT)
        except Exception:
            self.log.exception("on_kill: could not delete %s %s/%s", what, *self._where())
        else:
            self.log.info("on_kill: %s %s/%s deleted %s", what, *self._where(), how)

    async def cleanup(self) -> None:
        """Every exit (shutdown, reassignment, done): never delete anything here.

        Only the waiting ends (the cancelled ``submit``); the job goes on in the finalizer or is
        parked durable in the ledger, so a restarted or reassigned trigger picks it up.
        """
