"""``FinalizingJobTrigger``: a drop-in ``KubernetesJobTrigger`` that ends the task in the triggerer.

It takes every keyword of ``KubernetesJobTrigger`` (cncf-kubernetes 10.25.0) with the same
meaning, plus what finishing a batch/v1 Job needs: the Job's ``job_uid``, the ``finalization``
policy, ``unwrap_single``, ``xcom_mapped_length``, whether and how to delete the Job once done
(``delete_job``, ``propagation_policy``), ``on_kill_propagation_policy``, ``on_finish_action``,
``on_kill_action``, ``termination_grace_period``, ``worker_outcomes``, ``cluster_credentials``, and
``config_dict`` (the operator's ``config_file`` read where the task defers: upstream's async hook
ignores ``config_file``). In ``run()`` it hands the Job to the process-wide finalizer, which follows the
Job and its pods, reads each pod's XCom, pushes what upstream's ``execute_complete`` pushes, cleans
up, and ends the task with a task-end event. What it does not finish goes to the worker the classic
way (``triggers.finalizing``): the upstream ``run()`` and the operator's ``execute_complete``.

``on_kill`` (a user action, confirmed by Airflow: the task left DEFERRED) deletes the Job with
``on_kill_propagation_policy`` and, unless ``on_kill_action`` is ``keep_pod``, its pods, as
upstream's ``KubernetesJobOperator.on_kill`` does; ``cleanup()`` never deletes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any, get_args

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from airflow.providers.cncf.kubernetes.triggers.job import KubernetesJobTrigger
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.providers.cncf.kubernetes.utils.pod_manager import OnFinishAction, OnKillAction
from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults
from airflow.triggers.base import TriggerEvent

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import (
    BatchJobRef,
    CredentialsRef,
    JobSpec,
    Outcome,
    PropagationPolicy,
    batch_job_spec,
)
from triggers import job_kill
from triggers.cluster_hook import CredentialsKubernetesHook, cluster_ref_for
from triggers.events import EventPlan, job_payload, plan_job_event
from triggers.finalizing import FinalizingTrigger, task_instance_ref
from triggers.policy import FinalizationPolicy
from triggers.runtime import delete_pod

CLASSPATH = "triggers.job.FinalizingJobTrigger"


def _propagation(field: str, value: str) -> PropagationPolicy:
    """A ``propagationPolicy`` value, or ``ConfigurationError`` naming the field."""
    for allowed in get_args(PropagationPolicy):
        if value == allowed:
            return allowed  # type: ignore[no-any-return]
    raise ConfigurationError(f"{field} must be one of {list(get_args(PropagationPolicy))}, not {value!r}")


class FinalizingJobTrigger(FinalizingTrigger, KubernetesJobTrigger):  # type: ignore[misc]
    """Watch a batch/v1 Job and finish its task in the triggerer. Same kwargs as ``KubernetesJobTrigger``."""

    workload = "Job"

    def __init__(
        self,
        job_name: str,
        job_namespace: str,
        pod_names: list[str],
        pod_namespace: str,
        base_container_name: str,
        pod_name: str | None = None,
        kubernetes_conn_id: str | None = None,
        poll_interval: float = 10.0,
        cluster_context: str | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
        get_logs: bool = True,
        do_xcom_push: bool = False,
        *,
        job_uid: str | None = None,
        config_dict: dict[str, Any] | None = None,
        finalization: FinalizationPolicy | dict[str, Any] | None = None,
        unwrap_single: bool = True,
        xcom_mapped_length: bool = False,
        delete_job: bool = False,
        propagation_policy: PropagationPolicy = "Background",
        on_kill_propagation_policy: PropagationPolicy = "Foreground",
        on_finish_action: str = "delete_pod",
        on_kill_action: str = "delete_pod",
        termination_grace_period: int | None = None,
        worker_outcomes: dict[str, str] | None = None,
        cluster_credentials: CredentialsRef | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            job_name=job_name,
            job_namespace=job_namespace,
            pod_names=pod_names,
            pod_namespace=pod_namespace,
            base_container_name=base_container_name,
            pod_name=pod_name,
            kubernetes_conn_id=kubernetes_conn_id,
            poll_interval=poll_interval,
            cluster_context=cluster_context,
            config_file=config_file,
            in_cluster=in_cluster,
            get_logs=get_logs,
            do_xcom_push=do_xcom_push,
        )
        self.pod_names: list[str] = list(pod_names if pod_name is None else [pod_name])
        self.job_uid = job_uid
        self.config_dict = config_dict
        self._job: JobSpec | None = None
        self._fired_event = False
        self.unwrap_single = unwrap_single
        #: A mapped task depends on this one: the list's length is recorded with the push.
        self.xcom_mapped_length = xcom_mapped_length
        self.delete_job = delete_job
        # Validated now: a bad value fails at defer time in the worker, with the field named.
        self.propagation_policy = _propagation("propagation_policy", propagation_policy)
        self.on_kill_propagation_policy = _propagation(
            "on_kill_propagation_policy", on_kill_propagation_policy
        )
        self.on_finish_action = OnFinishAction(on_finish_action)
        self.on_kill_action = OnKillAction(on_kill_action)
        self.termination_grace_period = termination_grace_period
        #: Outcome kind -> why the worker must end it (``triggers.policy.worker_outcomes``).
        self.worker_outcomes = dict(worker_outcomes or {})
        self.finalization = FinalizationPolicy.coerce(finalization)
        #: A subclass's own connection (``JobFinalizationMixin.finalizer_cluster``): wins over the rest.
        self.cluster_credentials = (
            CredentialsRef.model_validate(cluster_credentials) if cluster_credentials is not None else None
        )

    #: Airflow's state of this trigger's task instance (the supervisor's GetTaskStates), as KPO asks it.
    get_task_state = KubernetesPodTrigger.get_task_state

    @cached_property
    def hook(self) -> Any:
        """The classic path connects as the finalizer does: the provider, else ``config_dict`` too."""
        if self.cluster_credentials is not None:
            return CredentialsKubernetesHook(self.cluster_credentials)
        return AsyncKubernetesHook(
            conn_id=self.kubernetes_conn_id,
            in_cluster=self.in_cluster,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            config_dict=self.config_dict,
        )

    @cached_property
    def _sync_hook(self) -> KubernetesHook:
        """``on_kill``'s client: the operator's own (``KubernetesJobOperator.on_kill`` deletes with it)."""
        return KubernetesHook(
            conn_id=self.kubernetes_conn_id,
            in_cluster=self.in_cluster,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Every constructor argument, so ``cls(**kwargs).serialize()`` round-trips exactly."""
        _, kwargs = super().serialize()
        kwargs.update(
            job_uid=self.job_uid,
            config_dict=self.config_dict,
            finalization=self.finalization.serialize(),
            unwrap_single=self.unwrap_single,
            xcom_mapped_length=self.xcom_mapped_length,
            delete_job=self.delete_job,
            propagation_policy=self.propagation_policy,
            on_kill_propagation_policy=self.on_kill_propagation_policy,
            on_finish_action=self.on_finish_action.value,
            on_kill_action=self.on_kill_action.value,
            termination_grace_period=self.termination_grace_period,
            worker_outcomes=dict(self.worker_outcomes),
        )
        if self.cluster_credentials is not None:
            kwargs["cluster_credentials"] = self.cluster_credentials.model_dump()
        return CLASSPATH, kwargs

    # -- what to finish, and how (``FinalizingTrigger``) ----------------------------------------

    def _where(self) -> tuple[str, str]:
        return self.job_namespace, self.job_name

    def _uid(self) -> str | None:
        return self.job_uid

    def job_ref(self) -> BatchJobRef:
        return BatchJobRef(
            namespace=self.job_namespace,
            name=self.job_name,
            uid=str(self.job_uid),
            base_container=self.base_container_name,
            unwrap_single=self.unwrap_single,
            delete_job=self.delete_job,
            propagation_policy=self.propagation_policy,
            on_kill_propagation_policy=self.on_kill_propagation_policy,
        )

    def job_spec(self, policy: FinalizationPolicy) -> JobSpec:
        """The finalizer job for this trigger's task-instance try (needs ``task_instance``)."""
        return batch_job_spec(
            ti=task_instance_ref(self.task_instance),
            cluster=cluster_ref_for(self, self.cluster_credentials),
            job=self.job_ref(),
            settings=policy.finish_settings(
                do_xcom_push=self.do_xcom_push,
                mapped_length=self.xcom_mapped_length,
                on_finish_action=self.on_finish_action.value,
                termination_grace_period=self.termination_grace_period,
                get_logs=self.get_logs,
            ),
        )

    def _get_logs(self) -> tuple[bool, bool]:
        # Upstream writes each pod's log once the Job ended (execute_complete), never live.
        return bool(self.get_logs), False

    def _end_plan(self, outcome: Outcome, to_worker: bool) -> EventPlan:
        return plan_job_event(
            outcome,
            name=self.job_name,
            namespace=self.job_namespace,
            pod_names=self.pod_names,
            pod_namespace=self.pod_namespace,
            to_worker=to_worker,
        )

    async def _classic_run(self) -> AsyncIterator[TriggerEvent]:
        """Upstream's ``run()``, unless a pod's sidecar is stopped already (a finalizer that failed
        mid-way stopped it after its read): upstream would wait for that sidecar forever, so the
        worker gets upstream's error event instead and the task fails (its retries apply)."""
        stopped = await self._stopped_sidecars() if self.do_xcom_push else []
        if stopped:
            message = (
                f"Job failed with error: the XCom sidecar of pod {', '.join(stopped)} was stopped "
                "before the classic path could read it (kpo-finalizer could not finish the Job)"
            )
            self.log.error("kpo-finalizer: %s", message)
            yield TriggerEvent(
                job_payload(
                    status="error",
                    message=message,
                    name=self.job_name,
                    namespace=self.job_namespace,
                    pod_names=self.pod_names,
                    pod_namespace=self.pod_namespace,
                )
            )
            return
        async for event in KubernetesJobTrigger.run(self):
            yield event

    async def _stopped_sidecars(self) -> list[str]:
        """Pods of ``pod_names`` whose XCom sidecar has terminated (a gone pod is upstream's to report)."""
        stopped = []
        for name in self.pod_names:
            try:
                pod = await self.hook.get_pod(name=name, namespace=self.pod_namespace)
            except Exception:
                continue
            statuses = getattr(pod.status, "container_statuses", None) or []
            if any(
                s.name == PodDefaults.SIDECAR_CONTAINER_NAME and getattr(s.state, "terminated", None)
                for s in statuses
            ):
                stopped.append(name)
        return stopped

    async def _delete_on_kill(self) -> str:
        """The Job (uid precondition, ``on_kill_propagation_policy``) through the finalizer, or with
        the provider's client where none runs; then its pods unless ``keep_pod``."""
        # A batch spec: its Job, as upstream's on_kill. None: no finalizer runs on this loop.
        deleted = await delete_pod(self._job) if self._job is not None else None
        ref = self.job_ref()
        grace = self.termination_grace_period
        keep = self.on_kill_action == OnKillAction.KEEP_POD
        return await asyncio.to_thread(job_kill.delete_blocking, self._sync_hook, ref, grace, keep, deleted)
