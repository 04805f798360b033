"""What ended the wait for a task's pod (``Completed``), or that it goes on (``Pending``).

``pod_state.assess`` answers with one of them from a pod snapshot; ``triage.triage`` turns a
``Completed`` into the task's ``Outcome``. ``EVENT_STATUS`` is what the provider's
``KubernetesPodTrigger`` event would have said for each kind, so a fallback to the operator's
``trigger_reentry`` behaves as upstream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal


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
