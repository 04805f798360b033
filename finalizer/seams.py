"""The narrow seams the pipeline and service work through: one cluster, the ledger, the XCom
sink, the concurrency slots.

Structural (``Protocol``) types, so the service can bind the real ``finalizer.kube``,
``finalizer.ledger`` and ``api_client`` pieces without the pipeline importing their
construction details — and a test can bind exactly the same real pieces. Job records are the
ledger's own frozen ``JobRecord`` (plain data), so nothing between the layers is ``Any``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from api_client.backoff import Classifier
from finalizer.batch_job import BatchJobView
from finalizer.config import FinalizerConfig
from finalizer.jobs import BatchJobRef, JobSpec, Outcome, PodRef, PropagationPolicy, Step
from finalizer.ledger.records import JobRecord
from finalizer.pod import PodView


class PodWatch(Protocol):
    """A subscription to one pod on the shared watch."""

    @property
    def latest(self) -> PodView | None:
        """The latest state; None while unknown and once the pod is gone."""
        ...

    @property
    def known(self) -> bool:
        """A first state (or the pod's absence) has been seen."""
        ...

    async def wait(
        self,
        predicate: Callable[[PodView], bool],
        timeout: float | None,  # noqa: ASYNC109 - the shared watcher's own signature
    ) -> PodView | None:
        """The first snapshot matching ``predicate``; None when the pod is gone; TimeoutError on timeout."""
        ...


class BatchJobWatch(Protocol):
    """A subscription to one batch/v1 Job (name + uid) on the cluster's shared Job watch."""

    @property
    def latest(self) -> BatchJobView | None:
        """The latest state; None while unknown and once the Job is gone."""
        ...

    @property
    def last_seen(self) -> BatchJobView | None:
        """The last state seen, kept once the Job is gone; None while unknown."""
        ...

    @property
    def gone(self) -> bool: ...

    @property
    def known(self) -> bool: ...

    async def wait(
        self,
        predicate: Callable[[BatchJobView], bool],
        timeout: float | None,  # noqa: ASYNC109 - the shared watcher's own signature
    ) -> BatchJobView | None:
        """The first snapshot matching ``predicate``; None when the Job is gone; TimeoutError on timeout."""
        ...


class MemberWatch(Protocol):
    """A Job's pods (its ``controller-uid`` label) on the shared pod watch: level-based, by uid."""

    @property
    def known(self) -> bool:
        """A first LIST answered: ``members`` is the whole truth from then on."""
        ...

    @property
    def members(self) -> Mapping[str, PodView]:
        """Every member pod seen and not gone, by uid (latest state)."""
        ...

    @property
    def gone(self) -> Mapping[str, PodView]:
        """Member pods seen and then deleted, by uid (their last state)."""
        ...

    async def changed(self, timeout: float | None) -> None:  # noqa: ASYNC109 - as ``wait``
        """Return at the next change of any member (new, updated, gone); TimeoutError on timeout."""
        ...


class SidecarOps(Protocol):
    """One job's use of its pod's XCom sidecar."""

    async def read_xcom(self, max_bytes: int) -> tuple[bool, Any]:
        """``(present, value)``: present is False for an empty or missing ``return.json``."""
        ...

    async def stop(self) -> None:
        """SIGINT the sidecar so the pod can end; gone pod or sidecar counts as stopped."""
        ...


class ClusterOps(Protocol):
    """What the pipeline asks of one cluster. Errors are ``finalizer.exceptions`` only."""

    def watch(self, pod: PodRef) -> AbstractAsyncContextManager[PodWatch]: ...

    async def read_pod(self, pod: PodRef) -> PodView:
        """This very pod (uid checked); ``PodNotFoundError`` when gone."""
        ...

    def sidecar(self, pod: PodRef) -> AbstractAsyncContextManager[SidecarOps]:
        """The pod's XCom sidecar for one job: the read, then the stop (one exec session if it can)."""
        ...

    async def log_tail(self, pod: PodRef, lines: int, max_bytes: int) -> str | None: ...

    def log_lines(self, pod: PodRef, *, follow: bool, since_seconds: int | None) -> AsyncIterator[list[str]]:
        """The base container's log (``timestamps=true`` lines) in bounded batches, read as it arrives."""
        ...

    async def delete_pod(self, pod: PodRef, grace_period: int | None) -> bool:
        """True if deleted now, False if already gone (uid precondition applied)."""
        ...

    async def label_checked(self, pod: PodRef) -> None: ...

    # -- batch/v1 Jobs (``FinalizingJobTrigger``); a member pod is a ``PodRef`` like any pod ------

    def watch_batch_job(self, job: BatchJobRef) -> AbstractAsyncContextManager[BatchJobWatch]: ...

    def watch_members(self, job: BatchJobRef) -> AbstractAsyncContextManager[MemberWatch]: ...

    async def read_batch_job(self, job: BatchJobRef) -> BatchJobView:
        """This very Job (uid checked); ``BatchJobNotFoundError`` when gone."""
        ...

    async def delete_batch_job(
        self, job: BatchJobRef, policy: PropagationPolicy, grace_period: int | None = None
    ) -> bool:
        """True if deleted now, False if already gone (uid precondition applied)."""
        ...

    def batch_job_dict(self, job: BatchJobView) -> dict[str, Any]:
        """The Job as upstream's ``V1Job.to_dict()`` gives it (the ``job`` XCom), JSON-safe."""
        ...


class JobLedger(Protocol):
    """Record a step (compare-and-set on owner + epoch; ``JobLostError`` when lost)."""

    async def advance(
        self,
        rec: JobRecord,
        step: Step,
        *,
        xcom: Any = ...,
        outcome: Outcome | None = ...,
        reached: Mapping[Step, datetime] | None = ...,
    ) -> JobRecord: ...


class Slots(Protocol):
    """Bounded concurrency: the slot a job holds while it actively finalizes (``ClusterLimiter``)."""

    def slot(self, spec: JobSpec) -> AbstractAsyncContextManager[None]: ...


class XComSink(Protocol):
    """XCom reads and writes for the job's task instance (``api_client.XComStore`` underneath)."""

    async def set(self, spec: JobSpec, key: str, value: Any, *, mapped_length: int | None = None) -> None: ...

    async def get(self, spec: JobSpec, key: str) -> Any:
        """The value, or None when there is none."""
        ...


class ServiceLedger(JobLedger, Protocol):
    """What the service needs beyond ``advance``: instances, submission, adoption."""

    async def register_instance(self, host: str, pid: int) -> str:
        """Create this process's instance row; its id is the job owner."""
        ...

    async def heartbeat(self, instance_id: str) -> None: ...

    async def unregister(self, instance_id: str) -> None: ...

    async def submit(self, spec: JobSpec, owner: str) -> JobRecord:
        """The job's record: new, adopted from a dead owner, or as is (live other owner, or DONE)."""
        ...

    async def purge_payloads(self, older_than: timedelta) -> int:
        """Drop pushed XCom payloads untouched for ``older_than``; returns how many."""
        ...

    async def adopt_stale(self, owner: str, *, threshold: float, limit: int) -> Sequence[JobRecord]:
        """Claim jobs whose owner's heartbeat is older than ``threshold`` s."""
        ...

    async def hand_over(self, key: str, reason: str) -> JobRecord | None:
        """Mark the job handed to the worker path: never adopted or written again."""
        ...

    async def release(self, rec: JobRecord) -> JobRecord:
        """Give the job up: no owner, adoptable at once."""
        ...

    async def newer_try(self, spec: JobSpec) -> int | None:
        """A try of the same task instance above ``spec``'s that the ledger holds, or None."""
        ...


#: Airflow's view of a job's task instance: its state (``"deferred"``, ``"scheduled"``, …), None
#: when Airflow does not know it. Raises when Airflow cannot be asked.
TaskState = Callable[[JobSpec], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Foundation:
    """The real pieces a running finalizer works with (closed by the exit stack that built them)."""

    ledger: ServiceLedger
    cluster_for: Callable[[JobSpec], Awaitable[ClusterOps]]
    xcoms: XComSink
    classify: Classifier
    #: Asked before acting on an adopted job (is its task still DEFERRED?); None: not asked.
    task_state: TaskState | None = None


#: Builds the foundation on the finalizer's own loop, registering cleanups on the exit stack.
Wiring = Callable[[FinalizerConfig, AsyncExitStack], Awaitable[Foundation]]
