"""The job controller's decision for one sync of one Job: a pure function of what it sees.

Follows ``pkg/controller/job`` of Kubernetes 1.31+: a Job that met its success criteria, or failed
(``backoffLimit`` exceeded, ``activeDeadlineSeconds`` passed), first gets ``SuccessCriteriaMet`` /
``FailureTarget``; its remaining pods are deleted; only once none is active or terminating does
it get the terminal ``Complete`` / ``Failed`` (one condition per sync, as the controller writes one
status update per sync). Pods are created up to ``parallelism`` (never more than the completions
still missing; for a work queue, ``completions`` unset, none after the first success), replacements
after an exponential back-off from the last failure. A suspended Job's pods are deleted uncounted;
resuming it restarts its clock (``startTime``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

#: The real controller's back-off cap (``MaxJobPodFailureBackOff``); the base is configurable.
MAX_BACKOFF_SECONDS = 360.0

BACKOFF_LIMIT = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETED = ("CompletionsReached", "Reached expected number of succeeded pods")
SUSPENDED = ("JobSuspended", "Job suspended")
RESUMED = ("JobResumed", "Job resumed")
TERMINAL = ("Complete", "Failed")


@dataclass(frozen=True, slots=True)
class JobView:
    parallelism: int
    completions: int | None
    backoff_limit: int
    deadline_seconds: int | None
    indexed: bool
    suspended: bool
    deleting: bool
    start: float | None  # epoch seconds of status.startTime
    #: type -> reason of every condition with status True.
    conditions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    phase: str
    deleting: bool
    ready: bool
    index: int | None

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class Tally:
    """Terminal pods counted so far (they stay counted after the pods are gone)."""

    succeeded: int = 0
    failed: int = 0
    succeeded_indexes: frozenset[int] = frozenset()
    last_failure: float | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    create: tuple[int | None, ...] = ()
    delete: tuple[str, ...] = ()
    #: (type, reason, message) of the one condition to set now (added, or replacing its type's).
    condition: tuple[str, str, str] | None = None
    condition_status: str = "True"
    #: The pods in ``delete`` go uncounted (suspension: they are neither failures nor completions).
    uncounted: bool = False
    set_start: bool = False
    #: Epoch seconds at which to sync again though nothing changed (back-off end, deadline).
    wake_at: float | None = None
    active: int = 0
    ready: int = 0
    terminating: int = 0


def backoff_delay(failed: int, base: float) -> float:
    """Seconds before a replacement after ``failed`` failures: ``base * 2**(failed-1)``, capped."""
    if failed <= 0 or base <= 0:
        return 0.0
    return float(min(base * 2 ** (failed - 1), MAX_BACKOFF_SECONDS))


def _succeeded(job: JobView, tally: Tally, active: Sequence[PodView]) -> bool:
    if job.completions is None:
        return tally.succeeded > 0 and not active
    if job.indexed:
        return len(tally.succeeded_indexes) >= job.completions
    return tally.succeeded >= job.completions and not active


def _to_create(
    job: JobView, tally: Tally, active: Sequence[PodView], busy: set[int]
) -> tuple[int | None, ...]:
    room = job.parallelism - len(active)
    if room <= 0:
        return ()
    if job.completions is None:
        return (None,) * room if tally.succeeded == 0 else ()
    if job.indexed:
        pending = [i for i in range(job.completions) if i not in tally.succeeded_indexes and i not in busy]
        return tuple(pending[:room])
    missing = job.completions - tally.succeeded - len(active)
    return (None,) * max(0, min(room, missing))


def decide(job: JobView, pods: Sequence[PodView], tally: Tally, now: float, backoff_base: float) -> Plan:
    active = [p for p in pods if not p.terminal and not p.deleting]
    terminating = sum(1 for p in pods if not p.terminal and p.deleting)
    base = Plan(active=len(active), ready=sum(1 for p in active if p.ready), terminating=terminating)
    if any(t in job.conditions for t in TERMINAL):
        return base
    names = tuple(p.name for p in active)
    if job.suspended:
        condition = None if "Suspended" in job.conditions else ("Suspended", *SUSPENDED)
        return replace(base, delete=names, condition=condition, uncounted=True)
    if "Suspended" in job.conditions:
        # Resumed: the condition turns False and the clock starts again (startTime is reset).
        return replace(base, condition=("Suspended", *RESUMED), condition_status="False", set_start=True)
    start = job.start if job.start is not None else now
    base = replace(base, set_start=job.start is None)
    target = job.conditions.get("FailureTarget")
    if target is not None or "SuccessCriteriaMet" in job.conditions:
        if active or terminating:
            return replace(base, delete=names)
        if target is not None:
            message = DEADLINE[1] if target == DEADLINE[0] else BACKOFF_LIMIT[1]
            return replace(base, condition=("Failed", target, message))
        return replace(base, condition=("Complete", *COMPLETED))
    if tally.failed > job.backoff_limit:
        return replace(base, delete=names, condition=("FailureTarget", *BACKOFF_LIMIT))
    deadline = start + job.deadline_seconds if job.deadline_seconds is not None else None
    if deadline is not None and now >= deadline:
        return replace(base, delete=names, condition=("FailureTarget", *DEADLINE))
    if _succeeded(job, tally, active):
        condition = ("SuccessCriteriaMet", *COMPLETED)
        return replace(base, delete=names, condition=condition)
    wake_at = deadline
    create: tuple[int | None, ...] = ()
    if not job.deleting:
        busy = {p.index for p in pods if not p.terminal and p.index is not None}
        create = _to_create(job, tally, active, busy)
        if create and tally.last_failure is not None:
            ready_at = tally.last_failure + backoff_delay(tally.failed, backoff_base)
            if now < ready_at:
                create = ()
                wake_at = ready_at if wake_at is None else min(wake_at, ready_at)
    return replace(base, create=create, wake_at=wake_at)


def compress_indexes(indexes: frozenset[int]) -> str:
    """``status.completedIndexes``: sorted, runs as intervals (``"0-2,4"``)."""
    out: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)
