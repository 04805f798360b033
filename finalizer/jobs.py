"""What a finalization job is: its key, its inputs, its steps and its outcome.

A job is keyed by the task-instance try and the pod uid, so a retried task (new try, new pod)
is a new job and a re-run trigger for the same try finds the same job. Everything here is
plain data, shared by the ledger, the pipeline and the triggers.
"""

from __future__ import annotations

import enum
import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

OnFinishAction = Literal["delete_pod", "delete_succeeded_pod", "delete_active_pod", "keep_pod"]
OnKillAction = Literal["delete_pod", "keep_pod"]
#: ``propagationPolicy`` of a batch/v1 Job DELETE (upstream's ``on_kill_propagation_policy`` values).
PropagationPolicy = Literal["Foreground", "Background", "Orphan"]
#: Key names refused in ``CredentialsRef.kwargs`` (they would sit in clear in the trigger table).
SECRET_WORDS = ("token", "password", "secret")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskInstanceRef(_Frozen):
    """The Airflow task-instance try this job finishes."""

    id: str
    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1


class CredentialsRef(_Frozen):
    """A cluster connection a KPO subclass supplies (GKE, EKS): a provider class and its kwargs.

    It travels in the trigger's kwargs and the ledger, so it names *how* to get credentials
    (``finalizer.kube.credentials.CredentialsProvider`` subclass by import path, JSON kwargs) and
    never holds them: the provider returns the host, CA and token where the triggerer needs them.
    """

    provider: str = Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
    kwargs: dict[str, Any] = {}

    @field_validator("kwargs")
    @classmethod
    def _plain_json_without_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"credentials kwargs must be plain JSON ({exc})") from None
        secret = sorted(k for k in value if any(word in k.lower() for word in SECRET_WORDS))
        if secret:
            raise ValueError(
                f"credentials kwargs {secret} look like secrets; they would be stored in clear in "
                "Airflow's trigger table and the ledger: let the provider fetch them instead"
            )
        return value


class ClusterRef(_Frozen):
    """How to reach a cluster: the same inputs ``KubernetesPodTrigger`` takes, or ``credentials``."""

    kubernetes_conn_id: str | None = None
    config_dict: dict[str, Any] | None = None
    cluster_context: str | None = None
    in_cluster: bool | None = None
    credentials: CredentialsRef | None = None

    @model_serializer(mode="wrap")
    def _without_unset_credentials(self, handler: SerializerFunctionWrapHandler) -> Any:
        """No ``credentials`` key when there are none: the key, and the JSON in a ledger that an
        older release (``extra="forbid"``) may read back, stay as they were."""
        data = handler(self)
        if isinstance(data, dict) and data.get("credentials") is None:
            data.pop("credentials", None)
        return data

    @property
    def key(self) -> str:
        """A stable identity: one shared client and watch set per key (same provider + kwargs: one)."""
        blob = json.dumps(self.model_dump(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class PodRef(_Frozen):
    namespace: str
    name: str
    uid: str
    base_container: str = "base"
    label_selector: str | None = None


class BatchJobRef(_Frozen):
    """A batch/v1 Job finished as one ledger job (``FinalizingJobTrigger``); its pods are its members.

    The members are found by the Job's ``controller-uid`` label, not by the pod names the worker
    saw, so pods created later (backoffLimit retries, ``completions > parallelism``) are read too.
    """

    namespace: str
    name: str
    uid: str
    base_container: str = "base"
    #: One pod's XCom is pushed as the value, not a one-item list (upstream's ``unwrap_single``).
    unwrap_single: bool = True
    #: Delete the Job once its task ended (upstream leaves it to ``ttlSecondsAfterFinished``).
    delete_job: bool = False
    #: ``propagationPolicy`` of that delete.
    propagation_policy: PropagationPolicy = "Background"
    #: ``propagationPolicy`` of the delete ``on_kill`` makes (upstream's default: Foreground).
    on_kill_propagation_policy: PropagationPolicy = "Foreground"

    @property
    def selector(self) -> str:
        """The label selector of the Job's pods (set by the Job controller on every pod)."""
        return f"batch.kubernetes.io/controller-uid={self.uid}"


class FinishSettings(_Frozen):
    """The per-task finalization settings (resolved from the FinalizationPolicy)."""

    do_xcom_push: bool = True
    multiple_outputs: bool = False
    mapped_length: bool = False
    on_finish_action: OnFinishAction = "delete_pod"
    skip_on_exit_code: tuple[int, ...] = ()
    termination_grace_period: int | None = None
    xcom_max_bytes: int = Field(default=1024 * 1024, gt=0)
    log_tail_lines: int = Field(default=50, ge=0)
    log_tail_bytes: int = Field(default=16 * 1024, ge=0)
    #: Also read the tail when the task succeeds (the operator's ``get_logs``: upstream's worker
    #: then writes the container's log to the task log); a failed task's tail is always read.
    log_tail_on_success: bool = True
    fail_fast_exit_codes: tuple[int, ...] = ()
    fail_fast_waiting_reasons: tuple[str, ...] = ("InvalidImageName", "ErrImageNeverPull")
    fail_fast_message_pattern: str | None = None


class StartupRules(_Frozen):
    """``KubernetesPodTrigger``'s start-up clocks for one pod (``triage.assess`` arguments).

    ``trigger_start`` starts the schedule clock (None: when the job starts waiting);
    ``execution_deadline`` is the operator's ``_execution_deadline`` (task ``execution_timeout``).
    """

    trigger_start: datetime | None = None
    schedule_timeout: float = Field(default=120, ge=0)
    startup_timeout: float = Field(default=120, ge=0)
    execution_deadline: datetime | None = None


class JobSpec(_Frozen):
    """Everything the pipeline needs to finish one task try.

    The workload is a KPO pod (``pod``), or a batch/v1 Job (``batch_job`` set): then ``pod`` holds
    the Job's own namespace, name and uid (``batch_job_spec`` builds it), so the key, the ledger's
    coordinates and ``status`` read the same for both kinds.
    """

    ti: TaskInstanceRef
    cluster: ClusterRef
    pod: PodRef
    settings: FinishSettings = FinishSettings()
    startup: StartupRules = StartupRules()
    batch_job: BatchJobRef | None = None

    @model_serializer(mode="wrap")
    def _without_unset_batch_job(self, handler: SerializerFunctionWrapHandler) -> Any:
        """No ``batch_job`` key for a pod: a KPO spec's JSON stays what an older release reads."""
        data = handler(self)
        if isinstance(data, dict) and data.get("batch_job") is None:
            data.pop("batch_job", None)
        return data

    @property
    def key(self) -> str:
        """Ledger primary key: ti id + try number + pod uid."""
        return f"{self.ti.id}:{self.ti.try_number}:{self.pod.uid}"


def batch_job_spec(
    ti: TaskInstanceRef,
    cluster: ClusterRef,
    job: BatchJobRef,
    settings: FinishSettings = FinishSettings(),
    startup: StartupRules = StartupRules(),
) -> JobSpec:
    """The ``JobSpec`` of a batch/v1 Job: ``pod`` names the Job itself (see ``JobSpec``)."""
    return JobSpec(
        ti=ti,
        cluster=cluster,
        pod=PodRef(namespace=job.namespace, name=job.name, uid=job.uid, base_container=job.base_container),
        settings=settings,
        startup=startup,
        batch_job=job,
    )


class Step(enum.IntEnum):
    """Pipeline steps, in order. A job resumes after the last one recorded."""

    REGISTERED = 0
    COMPLETION_SEEN = 10
    XCOM_PERSISTED = 20
    XCOM_PUSHED = 30
    DIAGNOSTICS_CAPTURED = 40
    SIDECAR_STOPPED = 50
    POD_CLEANED = 60
    DONE = 100


class OutcomeKind(enum.StrEnum):
    SUCCESS = "success"
    FAILED = "failed"  # Airflow applies retries
    SKIPPED = "skipped"
    FAIL_FAST = "fail_fast"  # deterministic failure: the worker must fail without retry
    FALLBACK = "fallback"  # policy sends the rest to the worker (trigger_reentry)


class Outcome(_Frozen):
    """How the task ends, and why."""

    kind: OutcomeKind
    reason: str = ""
    #: The classic KubernetesPodTrigger event status for trigger_reentry: success|failed|timeout|error.
    event_status: Literal["success", "failed", "timeout", "error"] = "success"
    exit_code: int | None = None
    termination_message: str | None = None
    log_tail: str | None = None
