"""How a finalization ``Outcome`` becomes the event a trigger yields. Pure, table-tested.

Outcomes the triggerer can end on its own become Airflow's task-end events
(``TaskSuccessEvent`` / ``TaskFailedEvent`` / ``TaskSkippedEvent``): the supervisor writes the
state, applies retries to FAILED, and no worker or scheduler is involved. The XCom has already
been pushed through the XCom store by then — never through the event's ``xcoms`` (it
double-encodes values in Airflow 3.3.2 and bypasses custom backends).

Outcomes that need the worker (fail without retry, or a policy that asks for the worker) become
the classic ``KubernetesPodTrigger`` event that ``trigger_reentry`` understands, plus a
``kpo_finalizer`` marker that ``FinalizingKubernetesPodOperator`` reads: the marker says the pod's
work is already done (XCom pushed, pod cleaned up), so the worker only ends the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from finalizer.jobs import Outcome, OutcomeKind

#: Key of the marker in a fallback event's payload.
MARKER_KEY = "kpo_finalizer"

Action = Literal["success", "failed", "skipped", "reentry"]


@dataclass(frozen=True, slots=True)
class EventPlan:
    """What the trigger yields: a task-end event (``action`` != reentry) or a classic payload."""

    action: Action
    payload: dict[str, Any] | None = None


_END: dict[OutcomeKind, Action] = {
    OutcomeKind.SUCCESS: "success",
    OutcomeKind.FAILED: "failed",
    OutcomeKind.SKIPPED: "skipped",
}


def classic_payload(
    *,
    status: str,
    name: str,
    namespace: str,
    message: str,
    trigger_kwargs: dict[str, Any],
    last_log_time: Any = None,
    marker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload ``KubernetesPodTrigger`` 10.25.0 yields (same keys, same order of precedence)."""
    payload: dict[str, Any] = {
        "status": status,
        "namespace": namespace,
        "name": name,
        "message": message,
        "last_log_time": last_log_time,
        **trigger_kwargs,
    }
    if marker is not None:
        payload[MARKER_KEY] = marker
    return payload


def plan_event(
    outcome: Outcome,
    *,
    name: str,
    namespace: str,
    trigger_kwargs: dict[str, Any],
    to_worker: bool = False,
) -> EventPlan:
    """Map an outcome to the event to yield. ``to_worker``: the policy sends every end to the worker."""
    if outcome.kind in _END and not to_worker:
        return EventPlan(_END[outcome.kind])
    return EventPlan(
        "reentry",
        classic_payload(
            status=outcome.event_status,
            name=name,
            namespace=namespace,
            message=_message(outcome),
            trigger_kwargs=trigger_kwargs,
            marker=_marker(outcome),
        ),
    )


def plan_job_event(
    outcome: Outcome,
    *,
    name: str,
    namespace: str,
    pod_names: list[str],
    pod_namespace: str,
    to_worker: bool = False,
) -> EventPlan:
    """``plan_event`` for a batch/v1 Job: the re-entry payload has ``KubernetesJobTrigger``'s keys.

    Its ``status`` is upstream's (``success`` / ``error``); ``job`` and ``xcom_result`` are None:
    the finalizer pushed both already, and the operator's ``execute_complete`` reads the marker.
    """
    if outcome.kind in _END and not to_worker:
        return EventPlan(_END[outcome.kind])
    payload = job_payload(
        status="success" if outcome.kind is OutcomeKind.SUCCESS else "error",
        message=_message(outcome),
        name=name,
        namespace=namespace,
        pod_names=pod_names,
        pod_namespace=pod_namespace,
        marker=_marker(outcome),
    )
    return EventPlan("reentry", payload)


def job_payload(
    *,
    status: str,
    message: str,
    name: str,
    namespace: str,
    pod_names: list[str],
    pod_namespace: str,
    marker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A payload with ``KubernetesJobTrigger`` 10.25.0's keys; ``job`` and ``xcom_result`` None."""
    payload: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "pod_names": list(pod_names),
        "pod_namespace": pod_namespace,
        "status": status,
        "message": message,
        "job": None,
        "xcom_result": None,
    }
    if marker is not None:
        payload[MARKER_KEY] = marker
    return payload


def _marker(outcome: Outcome) -> dict[str, Any]:
    return {
        "outcome": outcome.kind.value,
        "reason": outcome.reason,
        "exit_code": outcome.exit_code,
        "finalized": True,
    }


def _message(outcome: Outcome) -> str:
    return outcome.reason or f"kpo-finalizer outcome: {outcome.kind.value}"


def read_marker(event: dict[str, Any] | None) -> dict[str, Any] | None:
    """The finalizer marker of a trigger event, if this event came from a finalized pod."""
    if not isinstance(event, dict):
        return None
    marker = event.get(MARKER_KEY)
    return marker if isinstance(marker, dict) and marker.get("finalized") else None
