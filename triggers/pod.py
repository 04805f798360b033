"""``FinalizingPodTrigger``: a drop-in ``KubernetesPodTrigger`` that ends the task in the triggerer.

It takes every keyword of ``KubernetesPodTrigger`` (cncf-kubernetes 10.25.0) with the same
meaning, plus what finishing the task needs: ``do_xcom_push``, ``multiple_outputs``,
``skip_on_exit_code``, the pod ``uid``, the ``finalization`` policy, and whether the operator has
KPO callbacks. In ``run()`` it hands the pod to the process-wide finalizer (shared watch, the
upstream start-up rules, XCom read → push → cleanup) and yields a task-end event, so the task never
goes back through the scheduler and a worker. See ``triggers.events`` for the event mapping.

What it does not finish itself goes to the worker the classic way (the upstream ``run()``):
finalization disabled, KPO callbacks configured (they need the pod in the worker), no pod uid,
no task instance, a bad policy, or a finalizer that is not available.

The base container's log goes to the task log as upstream writes it (``get_logs``, the default):
the whole log once the pod ended, or — with ``logging_interval`` — live while the pod runs, through
one log stream per pod instead of a poll (``triggers.task_log``, ``finalizer.container_log``),
up to ``[kpo_finalizer] log_max_bytes``. ``get_logs=False`` writes none.

Restart is not kill: ``cleanup()`` (every exit, including triggerer shutdown and reassignment)
never deletes a pod; ``on_kill()`` applies ``on_kill_action`` only after Airflow confirms the task
left DEFERRED.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.providers.cncf.kubernetes.utils.pod_manager import OnKillAction
from airflow.triggers.base import TriggerEvent

from finalizer.jobs import CredentialsRef, JobSpec, Outcome, PodRef, StartupRules
from triggers.cluster_hook import CredentialsKubernetesHook, cluster_ref_for
from triggers.events import EventPlan, plan_event
from triggers.finalizing import FinalizingTrigger, task_instance_ref
from triggers.policy import FinalizationPolicy
from triggers.runtime import delete_pod

CLASSPATH = "triggers.pod.FinalizingPodTrigger"


class FinalizingPodTrigger(FinalizingTrigger, KubernetesPodTrigger):  # type: ignore[misc]
    """Watch a KPO pod and finish its task in the triggerer. Same kwargs as ``KubernetesPodTrigger``."""

    def __init__(
        self,
        pod_name: str,
        pod_namespace: str,
        trigger_start_time: datetime.datetime,
        base_container_name: str,
        kubernetes_conn_id: str | None = None,
        connection_extras: dict[str, Any] | None = None,
        poll_interval: float = 2,
        cluster_context: str | None = None,
        config_dict: dict[str, Any] | None = None,
        in_cluster: bool | None = None,
        get_logs: bool = True,
        startup_timeout: int = 120,
        startup_check_interval: float = 5,
        schedule_timeout: int = 120,
        on_finish_action: str = "delete_pod",
        on_kill_action: str = "delete_pod",
        termination_grace_period: int | None = None,
        last_log_time: Any = None,
        logging_interval: int | None = None,
        trigger_kwargs: dict[str, Any] | None = None,
        log_events_on_startup: bool = True,
        *,
        pod_uid: str | None = None,
        do_xcom_push: bool = True,
        multiple_outputs: bool = False,
        skip_on_exit_code: list[int] | tuple[int, ...] | int | None = None,
        xcom_mapped_length: bool = False,
        has_callbacks: bool = False,
        finalization: FinalizationPolicy | dict[str, Any] | None = None,
        worker_outcomes: dict[str, str] | None = None,
        cluster_credentials: CredentialsRef | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            pod_name=pod_name,
            pod_namespace=pod_namespace,
            trigger_start_time=trigger_start_time,
            base_container_name=base_container_name,
            kubernetes_conn_id=kubernetes_conn_id,
            connection_extras=connection_extras,
            poll_interval=poll_interval,
            cluster_context=cluster_context,
            config_dict=config_dict,
            in_cluster=in_cluster,
            get_logs=get_logs,
            startup_timeout=startup_timeout,
            startup_check_interval=startup_check_interval,
            schedule_timeout=schedule_timeout,
            on_finish_action=on_finish_action,
            on_kill_action=on_kill_action,
            termination_grace_period=termination_grace_period,
            last_log_time=last_log_time,
            logging_interval=logging_interval,
            trigger_kwargs=trigger_kwargs,
            log_events_on_startup=log_events_on_startup,
        )
        self.pod_uid = pod_uid
        #: The finalizer job once ``run`` chose the finalizing path (``on_kill`` deletes by its uid).
        self._job: JobSpec | None = None
        self.do_xcom_push = do_xcom_push
        self.multiple_outputs = multiple_outputs
        if skip_on_exit_code is None:
            codes: list[int] = []
        elif isinstance(skip_on_exit_code, int):
            codes = [skip_on_exit_code]
        else:
            codes = [int(c) for c in skip_on_exit_code]
        self.skip_on_exit_code = codes
        self.xcom_mapped_length = xcom_mapped_length
        self.has_callbacks = has_callbacks
        #: Outcome kind -> why the worker must end it (``triggers.policy.worker_outcomes``).
        self.worker_outcomes = dict(worker_outcomes or {})
        # Validate now: a bad policy fails at defer time in the worker, with the field named.
        self.finalization = FinalizationPolicy.coerce(finalization)
        #: A KPO subclass's own connection (``FinalizationMixin.finalizer_cluster``): wins over the rest.
        self.cluster_credentials = (
            CredentialsRef.model_validate(cluster_credentials) if cluster_credentials is not None else None
        )

    @cached_property
    def hook(self) -> Any:
        """The classic path and ``on_kill`` connect as the finalizer does (``cluster_credentials``)."""
        if self.cluster_credentials is not None:
            return CredentialsKubernetesHook(
                self.cluster_credentials, connection_extras=self.connection_extras
            )
        return KubernetesPodTrigger.hook.func(self)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Every constructor argument, so ``cls(**kwargs).serialize()`` round-trips exactly."""
        _, kwargs = super().serialize()
        kwargs["log_events_on_startup"] = self.log_events_on_startup
        kwargs.update(
            pod_uid=self.pod_uid,
            do_xcom_push=self.do_xcom_push,
            multiple_outputs=self.multiple_outputs,
            skip_on_exit_code=list(self.skip_on_exit_code),
            xcom_mapped_length=self.xcom_mapped_length,
            has_callbacks=self.has_callbacks,
            finalization=self.finalization.serialize(),
            worker_outcomes=dict(self.worker_outcomes),
        )
        if self.cluster_credentials is not None:  # older triggerers never see the new kwarg otherwise
            kwargs["cluster_credentials"] = self.cluster_credentials.model_dump()
        return CLASSPATH, kwargs

    # -- what to finish, and how -------------------------------------------------------------

    def job_spec(self, policy: FinalizationPolicy) -> JobSpec:
        """The finalizer job for this trigger's task-instance try (needs ``task_instance``)."""
        ti = self.task_instance
        return JobSpec(
            ti=task_instance_ref(ti),
            cluster=cluster_ref_for(self, self.cluster_credentials),
            pod=PodRef(
                namespace=self.pod_namespace,
                name=self.pod_name,
                uid=str(self.pod_uid),
                base_container=self.base_container_name,
            ),
            settings=policy.finish_settings(
                do_xcom_push=self.do_xcom_push,
                multiple_outputs=self.multiple_outputs,
                mapped_length=self.xcom_mapped_length,
                on_finish_action=self.on_finish_action.value,
                skip_on_exit_code=self.skip_on_exit_code,
                termination_grace_period=self.termination_grace_period,
                get_logs=self.get_logs,
            ),
            startup=self.startup_rules(),
        )

    def startup_rules(self) -> StartupRules:
        """The upstream start-up clocks for this pod (they start at ``trigger_start_time``)."""
        deadline = self.trigger_kwargs.get("_execution_deadline")
        start = self.trigger_start_time
        if isinstance(start, datetime.datetime) and start.tzinfo is None:
            start = start.replace(tzinfo=datetime.UTC)
        return StartupRules(
            trigger_start=start if isinstance(start, datetime.datetime) else None,
            schedule_timeout=float(self.schedule_timeout),
            startup_timeout=float(self.startup_timeout),
            execution_deadline=(
                datetime.datetime.fromtimestamp(float(deadline), tz=datetime.UTC)
                if deadline is not None
                else None
            ),
        )

    # -- the shared run and exits (``FinalizingTrigger``) ----------------------------------------

    def _where(self) -> tuple[str, str]:
        return self.pod_namespace, self.pod_name

    def _uid(self) -> str | None:
        return self.pod_uid

    def _classic_extra(self) -> str | None:
        if self.has_callbacks:
            return "the operator has KPO callbacks, which need the pod in the worker"
        return None

    def _get_logs(self) -> tuple[bool, bool]:
        return bool(self.get_logs), self.logging_interval is not None

    def _end_plan(self, outcome: Outcome, to_worker: bool) -> EventPlan:
        return plan_event(
            outcome,
            name=self.pod_name,
            namespace=self.pod_namespace,
            trigger_kwargs=self.trigger_kwargs,
            to_worker=to_worker,
        )

    def _classic_run(self) -> AsyncIterator[TriggerEvent]:
        return KubernetesPodTrigger.run(self)  # type: ignore[no-any-return]

    def _kill_kept(self) -> str | None:
        if self.on_kill_action == OnKillAction.KEEP_POD:
            return "on_kill_action is keep_pod; pod {}/{} kept".format(*self._where())
        return None

    async def _delete_on_kill(self) -> str:
        return await self._delete_pod()

    async def _delete_pod(self) -> str:
        """This very pod (uid precondition) through the finalizer; by name where none runs."""
        if self._job is not None and await delete_pod(self._job) is not None:
            return f"(uid {self._job.pod.uid})"
        await self.hook.delete_pod(
            name=self.pod_name,
            namespace=self.pod_namespace,
            grace_period_seconds=self.termination_grace_period,
        )
        return "(by name)"
