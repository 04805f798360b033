"""Has the task's pod finished? One snapshot in, ``Pending`` or ``Completed`` out (``assess``).

It mirrors the provider's ``KubernetesPodTrigger`` (cncf-kubernetes 10.25.0), but level-based: the
clocks come from the caller (``now``, ``trigger_start``) and the pod's own timestamps, not from a
poll loop, so a re-run trigger reaches the same answer. A running pod is judged here (its base
container's end, an eviction, the execution deadline); one not started yet by ``startup``.

Deliberate difference from upstream: the BASE container's exit code wins over the pod phase (the
XCom sidecar keeps the pod Running, and an eviction after the base container exited 0 turns the
phase Failed). Upstream itself treats "error, but base exited 0" as success in ``trigger_reentry``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from finalizer.decisions.completion import Completed, CompletionKind, Pending
from finalizer.decisions.startup import Clocks, assess_start
from finalizer.pod import ContainerView, PodView

_STARTING_PHASES = ("Pending", "Unknown")


#: What each ``DisruptionTarget`` reason means (Kubernetes 1.31 pod disruption conditions).
DISRUPTION_REASONS = {
    "EvictionByEvictionAPI": "evicted through the Eviction API (a drain or the cluster autoscaler)",
    "PreemptionByScheduler": "evicted: preempted by the scheduler for a higher-priority pod",
    "DeletionByTaintManager": "evicted: its node was tainted NoExecute (node lost or drained)",
    "DeletionByPodGC": "evicted: deleted by the pod garbage collector (its node is gone)",
    "TerminationByKubelet": "evicted by the kubelet (node pressure or node shutdown)",
}


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
    clocks = Clocks(
        now, trigger_start, schedule_timeout, startup_timeout, execution_deadline, extra_fatal_reasons
    )
    result = _assess(pod, base_container, clocks)
    return replace(result, base_container=base_container) if isinstance(result, Completed) else result


def _assess(pod: PodView | None, base_container: str, clocks: Clocks) -> Pending | Completed:
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
    return assess_start(pod, base, clocks)
