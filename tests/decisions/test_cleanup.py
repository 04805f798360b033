"""Table-driven tests for finalizer.decisions.cleanup.decide (the provider's on_finish_action)."""

from __future__ import annotations

from typing import Any

import pytest

from finalizer.decisions.cleanup import Delete, KeepAndLabel, decide
from finalizer.exceptions import ConfigurationError
from finalizer.jobs import OnFinishAction, Outcome, OutcomeKind
from finalizer.pod import PodView

CHECKED = {"already_checked": "True"}


def pod(phase: str) -> PodView:
    return PodView({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": phase}})


def outcome(kind: OutcomeKind, code: int | None) -> Outcome:
    return Outcome(kind=kind, exit_code=code)


OK = outcome(OutcomeKind.SUCCESS, 0)
FAILED = outcome(OutcomeKind.FAILED, 1)
TIMEOUT = outcome(OutcomeKind.FAILED, None)  # start-up timeout: the base container never ran
FALLBACK = outcome(OutcomeKind.FALLBACK, 0)

# (action, phase, outcome, expected type, expected labels)
CASES: list[tuple[OnFinishAction, str, Outcome, type[Any], dict[str, str]]] = [
    ("delete_pod", "Succeeded", OK, Delete, {}),
    ("delete_pod", "Running", OK, Delete, {}),  # sidecar still up, base exited 0: a success
    ("delete_pod", "Failed", FAILED, Delete, CHECKED),
    ("delete_pod", "Pending", TIMEOUT, Delete, CHECKED),
    ("delete_succeeded_pod", "Succeeded", OK, Delete, {}),
    ("delete_succeeded_pod", "Running", OK, Delete, {}),  # base exit 0 counts
    ("delete_succeeded_pod", "Failed", FAILED, KeepAndLabel, CHECKED),
    ("delete_succeeded_pod", "Pending", TIMEOUT, KeepAndLabel, CHECKED),
    ("delete_active_pod", "Pending", TIMEOUT, Delete, CHECKED),
    ("delete_active_pod", "Running", TIMEOUT, Delete, CHECKED),
    ("delete_active_pod", "Running", OK, KeepAndLabel, CHECKED),  # finishing, not active
    ("delete_active_pod", "Succeeded", OK, KeepAndLabel, CHECKED),
    ("delete_active_pod", "Failed", FAILED, KeepAndLabel, CHECKED),
    ("keep_pod", "Succeeded", OK, KeepAndLabel, CHECKED),
    ("keep_pod", "Failed", FAILED, KeepAndLabel, CHECKED),
    ("keep_pod", "Pending", TIMEOUT, KeepAndLabel, CHECKED),
    ("delete_pod", "Running", FALLBACK, KeepAndLabel, {}),  # the worker finishes it
    ("keep_pod", "Running", FALLBACK, KeepAndLabel, {}),
]


@pytest.mark.parametrize(("action", "phase", "result", "expected", "labels"), CASES)
def test_decide(
    action: OnFinishAction, phase: str, result: Outcome, expected: type[Any], labels: dict[str, str]
) -> None:
    decision = decide(action, pod(phase), result, grace_period_seconds=7)
    assert type(decision) is expected
    assert decision.labels == labels
    assert "ns/p" in decision.reason
    if isinstance(decision, Delete):
        assert decision.grace_period_seconds == 7


def test_unknown_action_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="delete_pod, delete_succeeded_pod"):
        decide("delete_everything", pod("Running"), OK)  # type: ignore[arg-type]
