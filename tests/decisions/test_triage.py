"""Table-driven tests for finalizer.decisions.triage (assess and triage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from finalizer.decisions.triage import Completed, CompletionKind, Pending, assess, triage
from finalizer.exceptions import ConfigurationError
from finalizer.jobs import FinishSettings, OutcomeKind
from finalizer.pod import PodView

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def terminated(code: int, message: str | None = None, reason: str = "Error") -> dict[str, Any]:
    state: dict[str, Any] = {"exitCode": code, "reason": reason, "finishedAt": iso(50)}
    if message is not None:
        state["message"] = message
    return {"terminated": state}


def pod(
    phase: str = "Running",
    base: dict[str, Any] | None = None,
    sidecar: dict[str, Any] | None = None,
    scheduled_at: float | None = 0,
    others: list[dict[str, Any]] | None = None,
) -> PodView:
    statuses = []
    if base is not None:
        statuses.append({"name": "base", "state": base})
    if sidecar is not None:
        statuses.append({"name": "airflow-xcom-sidecar", "state": sidecar})
    statuses.extend(others or [])
    conditions = []
    if scheduled_at is not None:
        conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": iso(scheduled_at)})
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if statuses:
        status["containerStatuses"] = statuses
    return PodView({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "status": status})


def pending(**kw: Any) -> PodView:
    return pod("Pending", **kw)


K = CompletionKind
R = OutcomeKind
RUNNING = {"running": {"startedAt": iso(1)}}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def run_assess(p: PodView | None, now: float, **kw: Any) -> Pending | Completed:
    return assess(
        p,
        base_container="base",
        now=T0 + timedelta(seconds=now),
        trigger_start=T0,
        schedule_timeout=120,
        startup_timeout=60,
        **kw,
    )


# (id, pod, now, expected kind or None for Pending, substring of the reason)
ASSESS_CASES: list[tuple[str, PodView | None, float, CompletionKind | None, str]] = [
    ("gone", None, 5, K.POD_GONE, "no longer exists"),
    ("base-ok-sidecar-running", pod(base=terminated(0), sidecar=RUNNING), 5, K.SUCCEEDED, "code 0"),
    ("base-failed", pod(base=terminated(2), sidecar=RUNNING), 5, K.FAILED, "code 2 (Error)"),
    ("base-ok-phase-failed", pod("Failed", base=terminated(0)), 5, K.SUCCEEDED, "code 0"),
    ("phase-succeeded-no-status", pod("Succeeded"), 5, K.SUCCEEDED, "succeeded"),
    ("phase-failed-with-containers", pod("Failed", sidecar=RUNNING), 5, K.FAILED, "failed"),
    ("failed-before-start", pod("Failed"), 5, K.START_FAILED, "before containers started"),
    ("running", pod(base=RUNNING, sidecar=RUNNING), 10_000, None, "still working"),
    ("unscheduled-in-time", pending(scheduled_at=None), 119, None, "waiting to be scheduled"),
    ("unscheduled-too-long", pending(scheduled_at=None), 120, K.TIMEOUT, "scheduled"),
    ("starting-in-time", pending(base=waiting("ContainerCreating")), 59, None, "ContainerCreating"),
    ("start-too-long", pending(base=waiting("ContainerCreating")), 60, K.TIMEOUT, "60s"),
    ("start-clock-from-scheduling", pending(scheduled_at=30), 89, None, "waiting to start"),
    ("start-clock-from-scheduling-late", pending(scheduled_at=30), 90, K.TIMEOUT, "start"),
    ("invalid-image", pending(base=waiting("InvalidImageName", "bad")), 1, K.START_FAILED, "bad"),
    ("never-pull", pending(base=waiting("ErrImageNeverPull")), 1, K.START_FAILED, "NeverPull"),
    ("pull-missing", pending(base=waiting("ErrImagePull", "not found")), 1, K.START_FAILED, "pull"),
    ("backoff-bare", pending(base=waiting("ImagePullBackOff")), 1, K.START_FAILED, "BackOff"),
    ("pull-rate-limited", pending(base=waiting("ErrImagePull", "429 Too Many Requests")), 1, None, ""),
    ("backoff-503", pending(base=waiting("ImagePullBackOff", "503 Service Unavailable")), 1, None, ""),
    ("sidecar-bad-image", pending(base=RUNNING, sidecar=waiting("InvalidImageName")), 1,
     K.START_FAILED, "InvalidImageName"),
    ("timeout-beats-image", pending(base=waiting("InvalidImageName")), 60, K.TIMEOUT, "start"),
    ("config-error-waits", pending(base=waiting("CreateContainerConfigError")), 1, None, ""),
    ("unknown-phase-starting", pod("Unknown", scheduled_at=None), 5, None, "scheduled"),
    ("wrong-base-name", pod(sidecar=RUNNING, others=[{"name": "main", "state": RUNNING}]), 5,
     K.NO_BASE_CONTAINER, "no container named 'base' (it has: airflow-xcom-sidecar, main)"),
    ("running-no-statuses-yet", pod(), 5, None, "still working"),
    ("node-lost-after-start", pod("Unknown", base=RUNNING), 10_000, None, "still working"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("p", "now", "kind", "text"), [c[1:] for c in ASSESS_CASES], ids=[c[0] for c in ASSESS_CASES]
)
def test_assess(p: PodView | None, now: float, kind: CompletionKind | None, text: str) -> None:
    result = run_assess(p, now)
    if kind is None:
        assert isinstance(result, Pending), result
    else:
        assert isinstance(result, Completed), result
        assert result.kind is kind
        assert result.base_container == "base"
    assert text in result.reason


def test_assess_pending_wake_at_and_deadline() -> None:
    unscheduled = run_assess(pod("Pending", scheduled_at=None), 10)
    assert isinstance(unscheduled, Pending)
    assert unscheduled.wake_at == T0 + timedelta(seconds=120)
    deadline = T0 + timedelta(seconds=40)
    starting = run_assess(pod("Pending", scheduled_at=0), 10, execution_deadline=deadline)
    assert isinstance(starting, Pending)
    assert starting.wake_at == deadline
    late = run_assess(pod(base=RUNNING), 40, execution_deadline=deadline)
    assert isinstance(late, Completed)
    assert (late.kind, late.event_status) == (CompletionKind.TIMEOUT, "timeout")
    # A finished base container wins over a passed deadline.
    done = run_assess(pod(base=terminated(0)), 41, execution_deadline=deadline)
    assert isinstance(done, Completed)
    assert done.kind is CompletionKind.SUCCEEDED


def test_assess_rerun_trigger_gets_full_startup_time() -> None:
    # Scheduled at T0, but the trigger (re)started at T0+100: the start-up clock starts then.
    result = assess(
        pod("Pending", scheduled_at=0),
        base_container="base",
        now=T0 + timedelta(seconds=150),
        trigger_start=T0 + timedelta(seconds=100),
        startup_timeout=60,
    )
    assert isinstance(result, Pending)
    assert result.wake_at == T0 + timedelta(seconds=160)


def test_assess_extra_fatal_reason() -> None:
    p = pod("Pending", base=waiting("CreateContainerConfigError", "secret x not found"))
    result = run_assess(p, 1, extra_fatal_reasons=("CreateContainerConfigError",))
    assert isinstance(result, Completed)
    assert (result.kind, result.waiting_reason) == (CompletionKind.START_FAILED, "CreateContainerConfigError")


def test_completed_carries_exit_details() -> None:
    result = run_assess(pod(base=terminated(3, "boom")), 5)
    assert isinstance(result, Completed)
    assert (result.exit_code, result.termination_message) == (3, "boom")
    assert result.finished_at == T0 + timedelta(seconds=50)


def done(code: int | None, kind: CompletionKind | None = None, **kw: Any) -> Completed:
    if kind is None:
        kind = CompletionKind.SUCCEEDED if code == 0 else CompletionKind.FAILED
    return Completed(
        kind, "Pod ns/p: base container 'base' ended", exit_code=code, base_container="base", **kw
    )


FF = FinishSettings(
    skip_on_exit_code=(99, 0),
    fail_fast_exit_codes=(42,),
    fail_fast_waiting_reasons=("InvalidImageName",),
    fail_fast_message_pattern=r"(?i)schema mismatch",
)
PLAIN = FinishSettings()

# (id, completion, settings, kind, event_status, substring of the reason)
TRIAGE_CASES: list[tuple[str, Completed, FinishSettings, OutcomeKind, str, str]] = [
    ("success", done(0), PLAIN, R.SUCCESS, "success", "ended"),
    ("failed", done(1), PLAIN, R.FAILED, "failed", "ended"),
    ("failed-with-message", done(1, termination_message="oom"), PLAIN, R.FAILED, "failed", ": oom"),
    ("skip", done(99), FF, R.SKIPPED, "failed", "skip_on_exit_code"),
    ("skip-zero-beats-success", done(0), FF, R.SKIPPED, "success", "skipping"),
    ("fail-fast-exit", done(42), FF, R.FAIL_FAST, "failed", "exit code 42"),
    ("exit-42-plain-retries", done(42), PLAIN, R.FAILED, "failed", "ended"),
    ("fail-fast-message", done(1, termination_message="Schema Mismatch in x"), FF, R.FAIL_FAST,
     "failed", "without retry"),
    ("message-no-match", done(1, termination_message="flaky network"), FF, R.FAILED, "failed", "flaky"),
    ("fail-fast-image", done(None, K.START_FAILED, waiting_reason="InvalidImageName"), FF,
     R.FAIL_FAST, "error", "InvalidImageName"),
    ("default-image-fail-fast", done(None, K.START_FAILED, waiting_reason="ErrImageNeverPull"),
     PLAIN, R.FAIL_FAST, "error", "deterministic"),
    ("pull-error-fails", done(None, K.START_FAILED, waiting_reason="ErrImagePull"), PLAIN,
     R.FAILED, "error", "ended"),
    ("timeout", done(None, K.TIMEOUT), PLAIN, R.FAILED, "timeout", "ended"),
    ("gone", done(None, K.POD_GONE), PLAIN, R.FAILED, "error", "ended"),
    ("no-base", done(None, K.NO_BASE_CONTAINER), PLAIN, R.FAILED, "error", "ended"),
    ("error-exit-0-is-success", done(0, K.START_FAILED), PLAIN, R.SUCCESS, "success", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("completion", "settings", "kind", "status", "text"),
    [c[1:] for c in TRIAGE_CASES],
    ids=[c[0] for c in TRIAGE_CASES],
)
def test_triage(
    completion: Completed, settings: FinishSettings, kind: OutcomeKind, status: str, text: str
) -> None:
    outcome = triage(completion, None, settings)
    assert (outcome.kind, outcome.event_status) == (kind, status)
    assert text in outcome.reason
    assert outcome.exit_code == completion.exit_code


def test_triage_fills_exit_code_and_message_from_newer_pod() -> None:
    completion = Completed(CompletionKind.FAILED, "Pod ns/p failed", base_container="base")
    outcome = triage(completion, pod("Failed", base=terminated(99, "bye")), FF)
    assert (outcome.kind, outcome.exit_code, outcome.termination_message) == (OutcomeKind.SKIPPED, 99, "bye")


def test_fail_fast_exit_code_read_from_newer_pod() -> None:
    completion = Completed(K.FAILED, "Pod ns/p failed", base_container="base")
    outcome = triage(completion, pod("Failed", base=terminated(42)), FF)
    assert (outcome.kind, outcome.exit_code) == (R.FAIL_FAST, 42)


def test_triage_end_to_end_from_pod() -> None:
    completion = run_assess(pod(base=terminated(2, "disk full"), sidecar=RUNNING), 5)
    assert isinstance(completion, Completed)
    outcome = triage(completion, None, PLAIN)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason == "Pod ns/p: base container 'base' exited with code 2 (Error): disk full"


def test_triage_bad_regex_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a valid regex"):
        triage(done(1, termination_message="x"), None, FinishSettings(fail_fast_message_pattern="("))


def test_naive_clocks_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        assess(pod(), base_container="base", now=datetime(2026, 1, 1), trigger_start=T0)
    with pytest.raises(ValueError, match="trigger_start must be timezone-aware"):
        assess(pod(), base_container="base", now=T0, trigger_start=datetime(2026, 1, 1))


def disrupted(
    base: dict[str, Any] | None,
    reason: str | None = "EvictionByEvictionAPI",
    message: str = "Eviction API: evicting",
    phase: str = "Running",
    status: str = "True",
    deleting: bool = True,
    kubelet_reason: str | None = None,
) -> PodView:
    """A pod under eviction as the API shows it: DisruptionTarget, deletionTimestamp, containers still up."""
    view = pod(phase, base=base, sidecar=RUNNING)
    raw = view.raw
    if reason is not None:
        cond: dict[str, Any] = {"type": "DisruptionTarget", "status": status, "reason": reason}
        if message:
            cond["message"] = message
        raw["status"]["conditions"].append(cond)
    if deleting:
        raw["metadata"]["deletionTimestamp"] = iso(40)
    if kubelet_reason is not None:
        raw["status"]["reason"] = kubelet_reason
        raw["status"]["message"] = "The node was low on resource: memory."
    return PodView(raw)


# (id, pod, expected kind, substring of the reason)
EVICTION_CASES: list[tuple[str, PodView, CompletionKind, str]] = [
    ("api-eviction-while-running", disrupted(RUNNING), K.EVICTED,
     "was evicted through the Eviction API (a drain or the cluster autoscaler): Eviction API: evicting "
     "before its base container ended"),
    ("preempted", disrupted(RUNNING, "PreemptionByScheduler", ""), K.EVICTED, "preempted by the scheduler"),
    ("taint-manager", disrupted(RUNNING, "DeletionByTaintManager", ""), K.EVICTED, "tainted NoExecute"),
    ("pod-gc", disrupted(RUNNING, "DeletionByPodGC", ""), K.EVICTED, "garbage collector"),
    ("kubelet-termination", disrupted(RUNNING, "TerminationByKubelet", ""), K.EVICTED, "by the kubelet"),
    ("unknown-reason", disrupted(RUNNING, "SomethingNew", ""), K.EVICTED, "evicted (SomethingNew)"),
    ("kubelet-evicted-phase", disrupted(None, None, phase="Failed", deleting=False, kubelet_reason="Evicted"),
     K.EVICTED, "evicted by the kubelet: The node was low on resource: memory."),
    ("evicted-while-pending", disrupted(waiting("ContainerCreating"), "PreemptionByScheduler", "", "Pending"),
     K.EVICTED, "preempted"),
    # The base container ended first: its exit decides; a failure also names the eviction.
    ("base-done-then-evicted", disrupted(terminated(0)), K.SUCCEEDED, "exited with code 0"),
    ("base-killed-by-eviction", disrupted(terminated(143)), K.FAILED,
     "exited with code 143 (Error); the pod was evicted through the Eviction API"),

]  # fmt: skip


@pytest.mark.parametrize(
    ("p", "kind", "text"), [c[1:] for c in EVICTION_CASES], ids=[c[0] for c in EVICTION_CASES]
)
def test_assess_eviction(p: PodView, kind: CompletionKind, text: str) -> None:
    result = run_assess(p, 5)
    assert isinstance(result, Completed), result
    assert result.kind is kind
    assert text in result.reason, result.reason


@pytest.mark.parametrize(
    "p",
    [disrupted(RUNNING, status="False"), disrupted(RUNNING, reason=None)],
    ids=["condition-false", "deleting-only"],
)
def test_no_eviction_without_a_true_disruption_target(p: PodView) -> None:
    """A delete (ours, a user's) shows deletionTimestamp only: the pod is still waited for."""
    assert isinstance(run_assess(p, 5), Pending)


def test_evicted_pod_fails_with_retries_and_no_xcom_read() -> None:
    """Evicted while running: FAILED (Airflow applies retries), event status failed, no exit code."""
    completion = run_assess(disrupted(RUNNING), 5)
    assert isinstance(completion, Completed)
    outcome = triage(completion, disrupted(RUNNING), FinishSettings())
    assert (outcome.kind, outcome.event_status, outcome.exit_code) == (R.FAILED, "failed", None)
    assert "evicted" in outcome.reason
