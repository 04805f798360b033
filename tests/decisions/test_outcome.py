"""Pure outcome rules, table by table: which outcomes need the XCom, and how findings change them."""

from __future__ import annotations

import pytest

from finalizer.decisions import outcome as rules
from finalizer.jobs import ClusterRef, FinishSettings, JobSpec, Outcome, OutcomeKind, PodRef, TaskInstanceRef

K = OutcomeKind


def _spec(do_xcom_push: bool = True) -> JobSpec:
    return JobSpec(
        ti=TaskInstanceRef(id="ti", dag_id="d", task_id="t", run_id="r"),
        cluster=ClusterRef(),
        pod=PodRef(namespace="ns", name="p", uid="u"),
        settings=FinishSettings(do_xcom_push=do_xcom_push),
    )


@pytest.mark.parametrize(
    ("kind", "exit_code", "do_xcom_push", "needs"),
    [
        (K.SUCCESS, 0, True, True),
        (K.FALLBACK, 0, True, True),
        (K.SUCCESS, 0, False, False),
        (K.FAILED, 1, True, True),  # ran and failed: upstream pushes its XCom too
        (K.FAIL_FAST, 2, True, True),
        (K.SKIPPED, 3, True, True),
        (K.FAILED, None, True, False),  # never ran a container: nothing to read
        (K.SKIPPED, None, True, False),
        (K.FAILED, 1, False, False),
    ],
)
def test_needs_xcom(kind: OutcomeKind, exit_code: int | None, do_xcom_push: bool, needs: bool) -> None:
    assert rules.needs_xcom(_spec(do_xcom_push), Outcome(kind=kind, exit_code=exit_code)) is needs


@pytest.mark.parametrize(
    ("kind", "succeeds"),
    [(K.SUCCESS, True), (K.FALLBACK, True), (K.FAILED, False), (K.FAIL_FAST, False), (K.SKIPPED, False)],
)
def test_succeeds(kind: OutcomeKind, succeeds: bool) -> None:
    assert rules.succeeds(Outcome(kind=kind)) is succeeds


@pytest.mark.parametrize(
    ("kind", "expected_kind", "expected_reason"),
    [
        (K.SUCCESS, K.FAILED, "bad xcom"),  # a success becomes a failure that says why
        (K.FALLBACK, K.FAILED, "bad xcom"),
        (K.FAILED, K.FAILED, "exit 1; bad xcom"),  # a failure keeps its kind and notes why
        (K.SKIPPED, K.SKIPPED, "exit 1; bad xcom"),
    ],
)
def test_failed(kind: OutcomeKind, expected_kind: OutcomeKind, expected_reason: str) -> None:
    got = rules.failed(Outcome(kind=kind, reason="exit 1"), "bad xcom")
    assert (got.kind, got.reason) == (expected_kind, expected_reason)


def test_lost_outcome_says_the_xcom_was_lost_or_the_result_unknown() -> None:
    lost = rules.lost_outcome(_spec(), "was evicted")
    assert lost.kind is K.FAILED
    assert lost.reason == "Pod ns/p was evicted before its XCom was read: its XCom was lost"
    assert "its result is unknown" in rules.lost_outcome(_spec(do_xcom_push=False), "vanished").reason


@pytest.mark.parametrize(
    ("current", "recorded", "expected_kind", "needle"),
    [
        (None, Outcome(kind=K.SUCCESS, reason="done elsewhere"), K.SUCCESS, "done elsewhere"),  # marker wins
        (Outcome(kind=K.SUCCESS), None, K.FAILED, "its XCom was lost"),
        (None, None, K.FAILED, "its XCom was lost"),
        (Outcome(kind=K.FAILED, reason="exit 1"), None, K.FAILED, "exit 1; the pod vanished before"),
    ],
)
def test_gone(
    current: Outcome | None, recorded: Outcome | None, expected_kind: OutcomeKind, needle: str
) -> None:
    got = rules.gone(_spec(), "vanished", current, recorded)
    assert got.kind is expected_kind
    assert needle in got.reason
