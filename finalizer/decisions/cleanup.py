"""Pure cleanup decision: after a job, delete the pod or keep it (and label it)?

Mirrors the provider's ``KubernetesPodOperator.process_pod_deletion`` and ``cleanup``
(cncf-kubernetes 10.25.0):

- ``delete_pod``: always delete.
- ``delete_succeeded_pod``: delete if the phase is Succeeded or the base container exited 0.
- ``delete_active_pod``: delete while the pod is Running/Pending — but a pod whose base container
  has terminated is *finishing*, not active: upstream first waits for such a pod to complete (phase
  Succeeded/Failed) and then keeps it. Only pods that never got going (start-up timeout, image
  errors, deadline) are deleted.
- ``keep_pod``: never delete.

Kept pods, and deleted pods that did not succeed, get ``already_checked=True`` first, as upstream
does, so a retry of the task never re-attaches to them (its selector has ``already_checked!=True``).
A ``fallback`` outcome leaves the pod untouched: the worker's ``trigger_reentry`` applies
``on_finish_action`` itself and needs the pod to do so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import OnFinishAction, Outcome, OutcomeKind
from finalizer.pod import PodView

#: The provider's ``KubernetesPodOperator.POD_CHECKED_KEY`` label.
ALREADY_CHECKED_LABELS = {"already_checked": "True"}
ON_FINISH_ACTIONS = ("delete_pod", "delete_succeeded_pod", "delete_active_pod", "keep_pod")


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the pod (with a uid precondition), after setting ``labels`` if any."""

    reason: str
    labels: dict[str, str] = field(default_factory=dict)
    grace_period_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class KeepAndLabel:
    """Keep the pod; set ``labels`` on it (empty: leave it untouched)."""

    reason: str
    labels: dict[str, str] = field(default_factory=dict)


def _succeeded(pod: PodView, outcome: Outcome) -> bool:
    """Phase Succeeded, or the base container exited 0 (the provider's ``container_is_succeeded``)."""
    return pod.phase == "Succeeded" or outcome.exit_code == 0


def _active(pod: PodView, outcome: Outcome) -> bool:
    """Running/Pending and the base container has not terminated (see the module docstring)."""
    return pod.phase in ("Running", "Pending") and outcome.exit_code is None


def decide(
    on_finish_action: OnFinishAction,
    pod: PodView,
    outcome: Outcome,
    *,
    grace_period_seconds: int | None = None,
) -> Delete | KeepAndLabel:
    """What to do with ``pod`` now that the job ended with ``outcome``.

    ``outcome.exit_code`` is the base container's exit code (None if it never terminated).
    Raises ``ConfigurationError`` for an unknown action.
    """
    if on_finish_action not in ON_FINISH_ACTIONS:
        raise ConfigurationError(
            f"on_finish_action {on_finish_action!r} is not one of {', '.join(ON_FINISH_ACTIONS)}"
        )
    name = f"{pod.namespace}/{pod.name}"
    if outcome.kind is OutcomeKind.FALLBACK:
        return KeepAndLabel(f"Pod {name} left to the worker's trigger_reentry (fallback)")
    labels = {} if _succeeded(pod, outcome) else dict(ALREADY_CHECKED_LABELS)
    if on_finish_action == "delete_pod":
        return Delete(f"Pod {name} deleted (on_finish_action=delete_pod)", labels, grace_period_seconds)
    if on_finish_action == "delete_succeeded_pod":
        if _succeeded(pod, outcome):
            return Delete(
                f"Pod {name} succeeded: deleted (on_finish_action=delete_succeeded_pod)",
                grace_period_seconds=grace_period_seconds,
            )
        return KeepAndLabel(
            f"Pod {name} did not succeed: kept (on_finish_action=delete_succeeded_pod)", labels
        )
    if on_finish_action == "delete_active_pod":
        if _active(pod, outcome):
            return Delete(
                f"Pod {name} still {pod.phase}: deleted (on_finish_action=delete_active_pod)",
                labels,
                grace_period_seconds,
            )
        return KeepAndLabel(
            f"Pod {name} finished: kept (on_finish_action=delete_active_pod)", dict(ALREADY_CHECKED_LABELS)
        )
    return KeepAndLabel(f"Pod {name} kept (on_finish_action=keep_pod)", dict(ALREADY_CHECKED_LABELS))
