"""Start-up rules for a pod that has not started (Pending/Unknown), in the provider's order.

The schedule and start-up timeouts, then image-pull errors, as ``utils.pod_manager``'s
``await_pod_start`` / ``detect_pod_terminate_early_issues`` apply them (cncf-kubernetes 10.25.0),
but level-based: ``Clocks`` carries the caller's ``now`` and ``trigger_start``, so a re-run
trigger reaches the same answer. Pure.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from finalizer.decisions.completion import Completed, CompletionKind, Pending
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


@dataclass(frozen=True, slots=True)
class Clocks:
    """``assess``'s time and start-up rules, passed down as one value."""

    now: datetime
    trigger_start: datetime
    schedule_timeout: float
    startup_timeout: float
    execution_deadline: datetime | None
    extra_fatal_reasons: Collection[str]


def pull_error(container: ContainerView, extra_fatal: Collection[str]) -> str | None:
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


def assess_start(pod: PodView, base: ContainerView | None, clocks: Clocks) -> Pending | Completed:
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
        message = pull_error(container, clocks.extra_fatal_reasons)
        if message is not None:
            return Completed(
                CompletionKind.START_FAILED, f"Pod {name}: {message}", waiting_reason=container.reason
            )
    if clocks.execution_deadline is not None:
        wake_at = min(wake_at, clocks.execution_deadline)
    return Pending(f"Pod {name} is {pod.phase}, {state}", wake_at=wake_at)
