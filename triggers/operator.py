"""``FinalizingKubernetesPodOperator`` and the mixin for users with their own KPO subclass.

With ``deferrable=True`` the provider's ``KubernetesPodOperator.invoke_defer_method`` builds a
``KubernetesPodTrigger`` (execution deadline, connection extras, the "already terminal" shortcut,
re-deferral) and calls ``self.defer``. The mixin intercepts that one call and swaps the trigger for
a ``FinalizingPodTrigger`` with the same arguments plus what the triggerer needs to end the task
itself. ``method_name`` stays ``"trigger_reentry"``, so any fallback event still works. With
``[kpo_finalizer] enabled = false`` where the task defers, the provider's trigger is kept as is.

``trigger_reentry`` handles the events the finalizer hands back (``triggers.events``): the pod's
work is already done (XCom pushed, pod cleaned up), so the worker only ends the task — and a
fail-fast outcome raises ``AirflowFailException`` (fail without retry). Classic events go to the
provider's own ``trigger_reentry`` unchanged.

Usage::

    from triggers.operator import FinalizingKubernetesPodOperator
    from triggers.policy import FinalizationPolicy

    FinalizingKubernetesPodOperator(
        task_id="train", image="…", deferrable=True, do_xcom_push=True,
        finalization=FinalizationPolicy(fail_fast_exit_codes=(2,)),
    )

    # your own subclass: put the mixin first
    class MyPodOperator(FinalizationMixin, MyCompanyKubernetesPodOperator): ...

A subclass that connects to its cluster its own way (GKE, EKS) overrides ``finalizer_cluster()`` to
name a ``finalizer.kube.credentials.CredentialsProvider``; its trigger (``KubernetesPodTrigger``
or a subclass such as ``GKEStartPodTrigger``) is then swapped too, and both the finalizer and the
classic path connect through that provider. A broken hook keeps the operator's own trigger.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk.bases.operator import BaseOperatorMeta
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import CredentialsRef, OutcomeKind
from triggers.cluster_hook import credentials_ref, describe_error
from triggers.events import read_marker
from triggers.pod import FinalizingPodTrigger
from triggers.policy import FinalizationPolicy, finalization_switched_on, worker_outcomes


def finalizing_trigger_from(
    trigger: KubernetesPodTrigger,
    *,
    pod_uid: str | None,
    do_xcom_push: bool,
    multiple_outputs: bool,
    skip_on_exit_code: list[int] | tuple[int, ...] | int | None,
    xcom_mapped_length: bool,
    has_callbacks: bool,
    finalization: FinalizationPolicy,
    worker_outcomes: dict[str, str] | None = None,
    cluster_credentials: CredentialsRef | None = None,
) -> FinalizingPodTrigger:
    """The ``FinalizingPodTrigger`` equivalent of an upstream trigger (every kwarg carried over).

    A subclass trigger (``GKEStartPodTrigger``) gives the ``KubernetesPodTrigger`` kwargs only: its
    own connection kwargs are what ``cluster_credentials`` replaces.
    """
    _, kwargs = KubernetesPodTrigger.serialize(trigger)
    kwargs["log_events_on_startup"] = trigger.log_events_on_startup
    return FinalizingPodTrigger(
        **kwargs,
        pod_uid=pod_uid,
        do_xcom_push=do_xcom_push,
        multiple_outputs=multiple_outputs,
        skip_on_exit_code=skip_on_exit_code,
        xcom_mapped_length=xcom_mapped_length,
        has_callbacks=has_callbacks,
        finalization=finalization,
        worker_outcomes=worker_outcomes,
        cluster_credentials=cluster_credentials,
    )


class FinalizationMixin:
    """Add ``finalization=`` to a ``KubernetesPodOperator`` subclass (list the mixin first)."""

    #: The provider's trigger this mixin swaps, for log lines.
    _classic_trigger = "KubernetesPodTrigger"

    def __init__(
        self, *args: Any, finalization: FinalizationPolicy | dict[str, Any] | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        # Validated at DAG parse time: a bad policy is an import error naming the field.
        self.finalization = FinalizationPolicy.coerce(finalization)
        self._finalizer_ti_mapped = False

    def invoke_defer_method(self, last_log_time: Any = None, context: Any = None) -> None:
        self._finalizer_note_ti(context)
        super().invoke_defer_method(last_log_time=last_log_time, context=context)  # type: ignore[misc]

    def _finalizer_note_ti(self, context: Any) -> None:
        """Whether this task instance is itself mapped (then no TaskMap length is recorded)."""
        if context is not None:
            ti = context.get("ti")
            map_index = getattr(ti, "map_index", None) if ti is not None else None
            self._finalizer_ti_mapped = map_index is not None and int(map_index) >= 0

    def _finalizer_mapped_length(self) -> bool:
        """Whether the XCom push must record a TaskMap length (a mapped task depends on us)."""
        try:
            has_mapped_dep = next(self.iter_mapped_dependants(), None) is not None  # type: ignore[attr-defined]
        except Exception:
            return False
        return has_mapped_dep and not self._finalizer_ti_mapped

    def _finalizer_switched_on(self) -> bool:
        """``[kpo_finalizer] enabled`` where the task defers; a bad value keeps the classic trigger."""
        try:
            return finalization_switched_on()
        except ConfigurationError as exc:
            log = getattr(self, "log", None)
            if log is not None:
                log.error("kpo-finalizer: %s; this task defers to the classic %s", exc, self._classic_trigger)
            return False

    def finalizer_cluster(self) -> CredentialsRef | dict[str, Any] | None:
        """Override in a subclass that connects to its cluster its own way (GKE, EKS, …).

        Return ``CredentialsRef(provider="pkg.module.Class", kwargs={...})`` (or its dict): a
        ``finalizer.kube.credentials.CredentialsProvider`` subclass importable in the triggerer,
        and JSON kwargs that say *which* cluster and identity (never a token: kwargs are stored in
        clear). It is called where the task defers, after ``execute`` set the operator up. None
        (the default) keeps the trigger's own ``kubernetes_conn_id`` / ``config_dict`` connection.
        """
        return None

    def _finalizer_credentials(self) -> tuple[bool, CredentialsRef | None]:
        """``finalizer_cluster()`` checked; ``(False, None)`` after an ERROR line when it is broken."""
        try:
            return True, credentials_ref(self.finalizer_cluster())
        except Exception as exc:
            log = getattr(self, "log", None)
            if log is not None:
                log.error(
                    "kpo-finalizer: finalizer_cluster() of %s failed (%s); this task keeps its "
                    "operator's own trigger (classic path)",
                    type(self).__name__,
                    describe_error(exc),
                )
            return False, None

    def _finalizer_worker_outcomes(self) -> dict[str, str]:
        """The outcomes only a worker can end (this task's callbacks and emails)."""
        return worker_outcomes(
            on_success_callback=bool(getattr(self, "on_success_callback", None)),
            on_skipped_callback=bool(getattr(self, "on_skipped_callback", None)),
            email=bool(getattr(self, "email", None)),
            email_on_failure=bool(getattr(self, "email_on_failure", False)),
            email_on_retry=bool(getattr(self, "email_on_retry", False)),
        )

    def _finalizer_swaps(
        self, trigger: Any, upstream: type, ours: type
    ) -> tuple[bool, CredentialsRef | None]:
        """Whether ``trigger`` (an ``upstream`` one) becomes ``ours``, and with which connection.

        Not when it is ours already, with ``[kpo_finalizer] enabled = false`` or a broken
        ``finalizer_cluster()``; a subclass trigger (GKE's) only with the subclass's own
        connection: ours could not connect as it does otherwise.
        """
        if (
            not isinstance(trigger, upstream)
            or isinstance(trigger, ours)
            or not self._finalizer_switched_on()
        ):
            return False, None
        ok, credentials = self._finalizer_credentials()
        return ok and (type(trigger) is upstream or credentials is not None), credentials

    def defer(self, *, trigger: Any, method_name: str, kwargs: Any = None, timeout: Any = None) -> Any:
        # enabled = false (the rollback switch): new tasks keep the provider's trigger, so nothing
        # new depends on this package; tasks already deferred to ours still finish in the triggerer.
        ok, credentials = self._finalizer_swaps(trigger, KubernetesPodTrigger, FinalizingPodTrigger)
        if ok:
            pod = getattr(self, "pod", None)
            uid = getattr(getattr(pod, "metadata", None), "uid", None)
            if uid is None and pod is not None:
                # The provider's get_or_create_pod returns the *request* object for a new pod (no
                # uid): read the pod once to learn it, else the trigger takes the classic path.
                try:
                    uid = self.pod_manager.read_pod(pod).metadata.uid  # type: ignore[attr-defined]
                except Exception:
                    uid = None
            trigger = finalizing_trigger_from(
                trigger,
                pod_uid=uid,
                do_xcom_push=bool(getattr(self, "do_xcom_push", True)),
                multiple_outputs=bool(getattr(self, "multiple_outputs", False)),
                skip_on_exit_code=getattr(self, "skip_on_exit_code", None),
                xcom_mapped_length=self._finalizer_mapped_length(),
                has_callbacks=bool(getattr(self, "callbacks", None)),
                finalization=self.finalization,
                worker_outcomes=self._finalizer_worker_outcomes(),
                cluster_credentials=credentials,
            )
        return super().defer(  # type: ignore[misc]
            trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout
        )

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        marker = read_marker(event)
        if marker is None:
            return super().trigger_reentry(context, event)  # type: ignore[misc]
        return end_finalized_task(marker, log=getattr(self, "log", None))


# Operator ``__init__``s are wrapped by ``BaseOperatorMeta`` (default_args, XComArg dependencies).
# The metaclass only wraps an ``__init__`` defined by an operator class itself, and a subclass that
# defines none would otherwise resolve to this plain mixin method: wrap it the same way.
FinalizationMixin.__init__ = BaseOperatorMeta._apply_defaults(FinalizationMixin.__init__)  # type: ignore[method-assign]


def end_finalized_task(marker: dict[str, Any], log: Any = None) -> None:
    """End a task whose pod the finalizer already handled, as its marker says.

    Success returns None: the XCom is already pushed, and the task runner does not push None.
    """
    kind = str(marker.get("outcome", ""))
    reason = str(marker.get("reason") or f"kpo-finalizer outcome {kind!r}")
    if log is not None:
        log.info("kpo-finalizer already finished the pod (outcome %s): %s", kind, reason)
    if kind == OutcomeKind.SUCCESS:
        return None
    if kind == OutcomeKind.SKIPPED:
        raise AirflowSkipException(reason)
    if kind == OutcomeKind.FAIL_FAST:
        raise AirflowFailException(reason)
    raise AirflowException(reason)


class FinalizingKubernetesPodOperator(FinalizationMixin, KubernetesPodOperator):  # type: ignore[misc]
    """``KubernetesPodOperator`` whose deferred tasks end in the triggerer (``finalization=``)."""
