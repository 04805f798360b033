"""``FinalizingKubernetesJobOperator`` and the mixin for users with their own ``KubernetesJobOperator``.

With ``deferrable=True`` and ``wait_until_job_complete=True`` the provider's ``execute`` creates the
Job, finds its pods and calls ``self.defer`` with a ``KubernetesJobTrigger``. The mixin swaps that
trigger for a ``FinalizingJobTrigger`` with the same arguments plus the Job's uid and what the
triggerer needs to end the task itself; ``method_name`` stays ``"execute_complete"``. The provider's
``create_job`` returns the *request* object (no uid): the mixin keeps the API's answer instead.
With ``[kpo_finalizer] enabled = false`` where the task defers, the provider's trigger is kept.

``execute_complete`` ends a task the finalizer finished from its marker event (the XComs are
pushed already, the pods cleaned up); classic events go to the provider's ``execute_complete``.

Usage::

    from triggers.job_operator import FinalizingKubernetesJobOperator

    FinalizingKubernetesJobOperator(
        task_id="batch", image="…", parallelism=3, completions=3, deferrable=True,
        wait_until_job_complete=True, do_xcom_push=True, delete_job=True,
    )

    # your own subclass: put the mixin first
    class MyJobOperator(JobFinalizationMixin, MyCompanyKubernetesJobOperator): ...

``finalizer_cluster()`` (a subclass's own cluster connection) works as for pods (``triggers.operator``).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.providers.cncf.kubernetes.triggers.job import KubernetesJobTrigger
from airflow.sdk.bases.operator import BaseOperatorMeta

from finalizer.jobs import CredentialsRef, PropagationPolicy
from triggers.events import read_marker
from triggers.job import FinalizingJobTrigger
from triggers.operator import FinalizationMixin, end_finalized_task
from triggers.policy import FinalizationPolicy


def finalizing_job_trigger_from(
    trigger: KubernetesJobTrigger,
    *,
    job_uid: str | None,
    config_dict: dict[str, Any] | None,
    finalization: FinalizationPolicy,
    unwrap_single: bool,
    xcom_mapped_length: bool,
    delete_job: bool,
    propagation_policy: PropagationPolicy,
    on_kill_propagation_policy: PropagationPolicy,
    on_finish_action: str,
    on_kill_action: str,
    termination_grace_period: int | None,
    worker_outcomes: dict[str, str] | None = None,
    cluster_credentials: CredentialsRef | None = None,
) -> FinalizingJobTrigger:
    """The ``FinalizingJobTrigger`` equivalent of an upstream trigger (every kwarg carried over)."""
    _, kwargs = KubernetesJobTrigger.serialize(trigger)
    return FinalizingJobTrigger(
        **kwargs,
        job_uid=job_uid,
        config_dict=config_dict,
        finalization=finalization,
        unwrap_single=unwrap_single,
        xcom_mapped_length=xcom_mapped_length,
        delete_job=delete_job,
        propagation_policy=propagation_policy,
        on_kill_propagation_policy=on_kill_propagation_policy,
        on_finish_action=on_finish_action,
        on_kill_action=on_kill_action,
        termination_grace_period=termination_grace_period,
        worker_outcomes=worker_outcomes,
        cluster_credentials=cluster_credentials,
    )


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


class JobFinalizationMixin(FinalizationMixin):
    """Add ``finalization=`` and ``delete_job=`` to a ``KubernetesJobOperator`` subclass (mixin first).

    ``delete_job``: delete the Job once its task ended, with ``delete_job_propagation_policy``
    (upstream leaves it to ``ttl_seconds_after_finished``).
    """

    _classic_trigger = "KubernetesJobTrigger"

    def __init__(
        self,
        *args: Any,
        delete_job: bool = False,
        delete_job_propagation_policy: PropagationPolicy = "Background",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.delete_job = delete_job
        self.delete_job_propagation_policy: PropagationPolicy = delete_job_propagation_policy

    def execute(self, context: Any) -> Any:
        self._finalizer_note_ti(context)
        return super().execute(context)  # type: ignore[misc]

    def create_job(self, job_request_obj: Any) -> Any:
        """Create the Job and keep the API's answer (it has the uid); upstream returns the request."""
        self.log.debug("Starting job:\n%s", job_request_obj.to_dict())  # type: ignore[attr-defined]
        return self.hook.create_job(job=job_request_obj)  # type: ignore[attr-defined]

    def _job_config_dict(self) -> dict[str, Any] | None:
        """The operator's kubeconfig file as a dict (as KPO sends it): the async hook reads no file."""
        self.convert_config_file_to_dict()  # type: ignore[attr-defined]
        value = getattr(self, "_config_dict", None)
        return value if isinstance(value, dict) else None

    def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
        ok, credentials = self._finalizer_swaps(trigger, KubernetesJobTrigger, FinalizingJobTrigger)
        if ok:
            job = getattr(self, "job", None)
            trigger = finalizing_job_trigger_from(
                trigger,
                job_uid=getattr(getattr(job, "metadata", None), "uid", None),
                config_dict=self._job_config_dict(),
                finalization=self.finalization,
                unwrap_single=bool(getattr(self, "unwrap_single", True)),
                xcom_mapped_length=self._finalizer_mapped_length(),
                delete_job=self.delete_job,
                propagation_policy=self.delete_job_propagation_policy,
                on_kill_propagation_policy=getattr(self, "on_kill_propagation_policy", "Foreground"),
                on_finish_action=_enum_value(getattr(self, "on_finish_action", "delete_pod")),
                on_kill_action=_enum_value(getattr(self, "on_kill_action", "delete_pod")),
                termination_grace_period=getattr(self, "termination_grace_period", None),
                worker_outcomes=self._finalizer_worker_outcomes(),
                cluster_credentials=credentials,
            )
        return super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def execute_complete(self, context: Any, event: dict[str, Any], **kwargs: Any) -> Any:
        marker = read_marker(event)
        if marker is None:
            return super().execute_complete(context, event, **kwargs)  # type: ignore[misc]
        return end_finalized_task(marker, log=getattr(self, "log", None))


# As for ``FinalizationMixin``: the metaclass wraps only an ``__init__`` an operator class defines.
JobFinalizationMixin.__init__ = BaseOperatorMeta._apply_defaults(JobFinalizationMixin.__init__)  # type: ignore[method-assign]


class FinalizingKubernetesJobOperator(JobFinalizationMixin, KubernetesJobOperator):  # type: ignore[misc]
    """``KubernetesJobOperator`` whose deferred tasks end in the triggerer (``finalization=``)."""
