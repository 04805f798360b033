"""Pure triage: has the task's pod finished, and how does the task end?

Two steps, both free of I/O so they can be tested table by table:

``assess`` looks at one snapshot of the pod (or its absence) and answers ``Pending`` (keep
watching, maybe until ``wake_at``) or ``Completed`` (with what happened). It mirrors the
provider's ``KubernetesPodTrigger`` and ``utils.pod_manager.await_pod_start`` /
``detect_pod_terminate_early_issues`` (cncf-kubernetes 10.25.0), but level-based: the clocks
come from the caller (``now``, ``trigger_start``) and the pod's own timestamps, not from a poll
loop, so a re-run trigger reaches the same answer.

``triage`` turns a ``Completed`` into the task's ``Outcome``: success, failed (Airflow applies
retries), skipped (``skip_on_exit_code``) or fail-fast (deterministic failures configured in
``FinishSettings``), with ``event_status`` set to what the classic trigger event would have said,
so a fallback to the operator's ``trigger_reentry`` behaves as upstream.

Deliberate difference from upstream: the BASE container's exit code wins over the pod phase (the
XCom sidecar keeps the pod Running, and an eviction after the base container exited 0 turns the
phase Failed). Upstream itself treats "error, but base exited 0" as success in ``trigger_reentry``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import FinishSettings, Outcome, OutcomeKind
from finalizer.pod import ContainerView, PodView

#: Waiting reasons that end start-up at once (provider: ``FATAL_STATES``).
FATAL_WAITING_REASONS = ("InvalidImageName", "ErrImageNeverPull")
#: Waiting reasons that are fatal unless the message looks transient (provider: ``TRANSIENT_STATES``).
PULL_WAITING_REASONS = ("ErrImagePull", "ImagePullBackOff")
#: Message fragments that make an image-pull error transient (provider: ``TRANSIENT_ERROR_PATTERNS``).
TRANSIENT_PULL_PATTERNS = (
    "pull qps exceeded",
    "rate limit",
    "too many requests",
    "quota exceeded",
    "temporarily unavailable",
    "timeout",
    "account limit",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
)

_STARTING_PHASES = ("Pending", "Unknown")


class CompletionKind(enum.StrEnum):
    """What ended the wait for the pod."""

    SUCCEEDED = "succeeded"  # base container exited 0 (or phase Succeeded)
    FAILED = "failed"  # base container exited non-zero (or phase Failed)
    TIMEOUT = "timeout"  # not scheduled / not started in time, or the execution deadline passed
    START_FAILED = "start_failed"  # fatal image error, or the pod failed before its containers started
    POD_GONE = "pod_gone"  # the pod no longer exists
    NO_BASE_CONTAINER = "no_base_container"  # the pod runs, but has no container of the base name
    EVICTED = "evicted"  # DisruptionTarget (or the kubelet's Evicted) before the base container ended


EventStatus = Literal["success", "failed", "timeout", "error"]

#: The classic KubernetesPodTrigger event status for each kind of completion.
EVENT_STATUS: dict[CompletionKind, EventStatus] = {
    CompletionKind.SUCCEEDED: "success",
    CompletionKind.FAILED: "failed",
    CompletionKind.TIMEOUT: "timeout",
    CompletionKind.START_FAILED: "error",  # upstream raises PodLaunchFailedException → "error"
    CompletionKind.POD_GONE: "error",  # upstream's read_pod raises 404 → "error"
    CompletionKind.NO_BASE_CONTAINER: "error",  # upstream's next(...) raises StopIteration → "error"
    CompletionKind.EVICTED: "failed",  # upstream sees the killed container (143/137) → "failed"
}

#: What each ``DisruptionTarget`` reason means (Kubernetes 1.31 pod disruption conditions).
DISRUPTION_REASONS = {
    "EvictionByEvictionAPI": "evicted through the Eviction API (a drain or the cluster autoscaler)",
    "PreemptionByScheduler": "evicted: preempted by the scheduler for a higher-priority pod",
    "DeletionByTaintManager": "evicted: its node was tainted NoExecute (node lost or drained)",
    "DeletionByPodGC": "evicted: deleted by the pod garbage collector (its node is gone)",
    "TerminationByKubelet": "evicted by the kubelet (node pressure or node shutdown)",
}


@dataclass(frozen=True, slots=True)
class Pending:
    """The pod has not finished: keep watching."""

    reason: str
    #: When a start-up / deadline timeout fires if nothing changes (None: no clock is running).
    wake_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """The wait is over; ``triage`` decides what it means for the task."""

    kind: CompletionKind
    reason: str
    exit_code: int | None = None
    termination_message: str | None = None
    #: The base container's (or the offending container's) waiting reason, e.g. ``ErrImagePull``.
    waiting_reason: str | None = None
    #: When the base container terminated, per the kubelet (for completion → done latency).
    finished_at: datetime | None = None
    #: The base container's name (lets ``triage`` read a newer pod snapshot).
    base_container: str = ""

    @property
    def event_status(self) -> EventStatus:
        return EVENT_STATUS[self.kind]


def _pull_error(container: ContainerView, extra_fatal: Collection[str]) -> str | None:
    """The provider's ``detect_pod_terminate_early_issues`` for one container."""
    if container.state != "waiting":
        return None
    reason = container.reason or ""
    message = container.message or ""
    fatal = reason in FATAL_WAITING_REASONS or reason in extra_fatal
    if reason in PULL_WAITING_REASONS:
        fatal = not any(p in message.lower() for p in TRANSIENT_PULL_PATTERNS)
    if not fatal:
        return None
    return f"Image cannot be pulled, unable to start: {reason}\n{message}".rstrip()


def eviction(pod: PodView) -> str | None:
    """Why the pod is being evicted, if it is: its ``DisruptionTarget`` condition (status True),
    or the kubelet's own eviction (phase Failed, ``status.reason`` Evicted)."""
    cond = pod.condition("DisruptionTarget")
    if cond is not None and cond.get("status") == "True":
        reason = str(cond.get("reason") or "")
        text = DISRUPTION_REASONS.get(reason, f"evicted ({reason or 'DisruptionTarget'})")
        message = cond.get("message")
        return f"{text}: {message}" if message else text
    if pod.status.get("reason") == "Evicted":
        message = pod.status.get("message")
        return f"evicted by the kubelet: {message}" if message else "evicted by the kubelet"
    return None


def _terminated(pod: PodView, base: ContainerView) -> Completed:
    code = base.exit_code
    label = f"Pod {pod.namespace}/{pod.name}: base container {base.name!r}"
    if code == 0:
        kind, reason = CompletionKind.SUCCEEDED, f"{label} exited with code 0"
    else:
        kind = CompletionKind.FAILED
        why = f" ({base.reason})" if base.reason else ""
        reason = f"{label} exited with code {code}{why}"
    return Completed(
        kind,
        reason,
        exit_code=code,
        termination_message=base.message,
        finished_at=base.finished_at,
    )


def assess(
    pod: PodView | None,
    *,
    base_container: str,
    now: datetime,
    trigger_start: datetime,
    schedule_timeout: float = 120,
    startup_timeout: float = 120,
    execution_deadline: datetime | None = None,
    extra_fatal_reasons: Collection[str] = (),
) -> Pending | Completed:
    """Has the task's pod finished? One snapshot in, one answer out.

    ``trigger_start`` starts the schedule clock (the provider starts it when it begins polling);
    the start-up clock starts when the pod was scheduled, but never before ``trigger_start`` (a
    re-run trigger grants the full start-up time again, as upstream). ``extra_fatal_reasons`` are
    waiting reasons that end start-up at once besides upstream's (e.g. ``CreateContainerConfigError``).
    """
    for label, value in (
        ("now", now),
        ("trigger_start", trigger_start),
        ("execution_deadline", execution_deadline),
    ):
        if value is not None and value.utcoffset() is None:
            raise ValueError(
                f"assess: {label} must be timezone-aware (pod timestamps are UTC), got {value!r}"
            )
    clocks = _Clocks(
        now, trigger_start, schedule_timeout, startup_timeout, execution_deadline, extra_fatal_reasons
    )
    result = _assess(pod, base_container, clocks)
    return replace(result, base_container=base_container) if isinstance(result, Completed) else result


@dataclass(frozen=True, slots=True)
class _Clocks:
    """``assess``'s time and start-up rules, passed down as one value."""

    now: datetime
    trigger_start: datetime
    schedule_timeout: float
    startup_timeout: float
    execution_deadline: datetime | None
    extra_fatal_reasons: Collection[str]


def _assess(pod: PodView | None, base_container: str, clocks: _Clocks) -> Pending | Completed:
    if pod is None:
        return Completed(CompletionKind.POD_GONE, "The pod no longer exists (deleted or evicted)")
    name = f"{pod.namespace}/{pod.name}"
    base = pod.container(base_container)
    evicted = eviction(pod)
    if base is not None and base.state == "terminated":
        done = _terminated(pod, base)
        if evicted is not None and done.kind is CompletionKind.FAILED:
            return replace(done, reason=f"{done.reason}; the pod was {evicted}")
        return done
    if evicted is not None:
        # At once, not when the containers die: the pod is going, and its container will not finish.
        return Completed(CompletionKind.EVICTED, f"Pod {name} was {evicted} before its base container ended")
    phase = pod.phase
    if phase == "Succeeded":
        return Completed(CompletionKind.SUCCEEDED, f"Pod {name} succeeded")
    if phase == "Failed":
        if not pod.containers():
            return Completed(CompletionKind.START_FAILED, f"Pod {name} failed before containers started")
        return Completed(CompletionKind.FAILED, f"Pod {name} failed ({pod.status.get('reason') or 'phase'})")
    deadline = clocks.execution_deadline
    if deadline is not None and clocks.now >= deadline:
        return Completed(CompletionKind.TIMEOUT, f"Pod {name} reached the task's execution_timeout deadline")
    lost_node = phase == "Unknown" and base is not None and base.state == "running"
    if phase not in _STARTING_PHASES or lost_node:
        # Running (or Unknown after it ran: a lost node): no start-up clock applies any more.
        if base is None and pod.containers():
            # Running: every container has a status by now; waiting would never end.
            names = ", ".join(sorted(c.name for c in pod.containers()))
            return Completed(
                CompletionKind.NO_BASE_CONTAINER,
                f"Pod {name} has no container named {base_container!r} (it has: {names})",
            )
        return Pending(f"Pod {name} is {phase}; base container still working", wake_at=deadline)
    return _assess_start(pod, base, clocks)


def _assess_start(pod: PodView, base: ContainerView | None, clocks: _Clocks) -> Pending | Completed:
    """Start-up rules for a Pending/Unknown pod, in the provider's order: timeouts, then images."""
    name = f"{pod.namespace}/{pod.name}"
    waiting = base.reason if base is not None and base.state == "waiting" else None
    if pod.is_scheduled:
        clock_start = max(pod.scheduled_at or clocks.trigger_start, clocks.trigger_start)
        wake_at = clock_start + timedelta(seconds=clocks.startup_timeout)
        if clocks.now >= wake_at:
            return Completed(
                CompletionKind.TIMEOUT,
                f"Pod {name} took too long to start. More than {clocks.startup_timeout:g}s. "
                "Check the pod events in kubernetes.",
                waiting_reason=waiting,
            )
        state = f"scheduled, waiting to start ({waiting})" if waiting else "scheduled, waiting to start"
    else:
        wake_at = clocks.trigger_start + timedelta(seconds=clocks.schedule_timeout)
        if clocks.now >= wake_at:
            return Completed(
                CompletionKind.TIMEOUT,
                f"Pod {name} took too long to be scheduled on the cluster, giving up. "
                f"More than {clocks.schedule_timeout:g}s. Check the pod events in kubernetes.",
                waiting_reason=waiting,
            )
        state = "waiting to be scheduled"
    for container in pod.containers():
        message = _pull_error(container, clocks.extra_fatal_reasons)
        if message is not None:
            return Completed(
                CompletionKind.START_FAILED, f"Pod {name}: {message}", waiting_reason=container.reason
            )
    if clocks.execution_deadline is not None:
        wake_at = min(wake_at, clocks.execution_deadline)
    return Pending(f"Pod {name} is {pod.phase}, {state}", wake_at=wake_at)


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigurationError(
            f"fail_fast_message_pattern {pattern!r} is not a valid regex: {exc}"
        ) from exc


def _fail_fast_rule(
    completion: Completed, code: int | None, message: str | None, settings: FinishSettings
) -> str | None:
    """Which configured deterministic-failure rule matched, if any (human-readable)."""
    if code is not None and code in settings.fail_fast_exit_codes:
        return f"exit code {code} is configured as a deterministic failure"
    if completion.waiting_reason and completion.waiting_reason in settings.fail_fast_waiting_reasons:
        return f"waiting reason {completion.waiting_reason} is configured as a deterministic failure"
    pattern = settings.fail_fast_message_pattern
    if pattern and message and _compile(pattern).search(message):
        return f"termination message matches {pattern!r}, configured as a deterministic failure"
    return None


def _fill_from_pod(
    pod: PodView, completion: Completed, exit_code: int | None, message: str | None
) -> tuple[int | None, str | None]:
    base = pod.container(completion.base_container) if completion.base_container else None
    if base is None or base.state != "terminated":
        return exit_code, message
    return (base.exit_code if exit_code is None else exit_code), (message or base.message)


def triage(completion: Completed, pod: PodView | None, settings: FinishSettings) -> Outcome:
    """How the task ends. Precedence mirrors upstream: skip > success > fail-fast > failed.

    ``pod`` is the latest snapshot (None when gone); it only fills in an exit code or a
    termination message that ``completion`` lacks. Raises ``ConfigurationError`` when
    ``settings.fail_fast_message_pattern`` is not a valid regular expression.
    """
    exit_code, message = completion.exit_code, completion.termination_message
    if pod is not None and (exit_code is None or message is None):
        exit_code, message = _fill_from_pod(pod, completion, exit_code, message)
    status = completion.event_status
    if exit_code is not None and exit_code in settings.skip_on_exit_code:
        reason = f"{completion.reason}; exit code {exit_code} is in skip_on_exit_code: skipping"
        return Outcome(
            kind=OutcomeKind.SKIPPED,
            reason=reason,
            event_status=status,
            exit_code=exit_code,
            termination_message=message,
        )
    if completion.kind is CompletionKind.SUCCEEDED or exit_code == 0:
        # Upstream: an error event whose base container exited 0 is treated as success.
        return Outcome(
            kind=OutcomeKind.SUCCESS,
            reason=completion.reason,
            event_status="success",
            exit_code=exit_code,
            termination_message=message,
        )
    reason = completion.reason + (f": {message}" if message and message not in completion.reason else "")
    rule = _fail_fast_rule(completion, exit_code, message, settings)
    if rule is not None:
        return Outcome(
            kind=OutcomeKind.FAIL_FAST,
            reason=f"{reason} ({rule}; failing without retry)",
            event_status=status,
            exit_code=exit_code,
            termination_message=message,
        )
    return Outcome(
        kind=OutcomeKind.FAILED,
        reason=reason,
        event_status=status,
        exit_code=exit_code,
        termination_message=message,
    )
