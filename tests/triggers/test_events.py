"""Outcome → event mapping, and the worker's handling of finalized fallback events."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from finalizer.jobs import Outcome, OutcomeKind
from triggers.events import MARKER_KEY, plan_event, read_marker
from triggers.operator import end_finalized_task

KW = {"_execution_deadline": 123}


@pytest.mark.parametrize(
    ("kind", "to_worker", "action"),
    [
        (OutcomeKind.SUCCESS, False, "success"),
        (OutcomeKind.FAILED, False, "failed"),
        (OutcomeKind.SKIPPED, False, "skipped"),
        (OutcomeKind.FAIL_FAST, False, "reentry"),
        (OutcomeKind.FALLBACK, False, "reentry"),
        (OutcomeKind.SUCCESS, True, "reentry"),
        (OutcomeKind.FAILED, True, "reentry"),
        (OutcomeKind.SKIPPED, True, "reentry"),
    ],
)
def test_plan_event(kind: OutcomeKind, to_worker: bool, action: str) -> None:
    outcome = Outcome(kind=kind, reason="why", event_status="failed", exit_code=3)
    plan = plan_event(outcome, name="p", namespace="ns", trigger_kwargs=KW, to_worker=to_worker)
    assert plan.action == action
    if action == "reentry":
        assert plan.payload is not None
        # What the provider's trigger_reentry reads, plus the operator's marker.
        assert plan.payload["status"] == "failed"
        assert plan.payload["name"] == "p"
        assert plan.payload["namespace"] == "ns"
        assert plan.payload["message"] == "why"
        assert plan.payload["_execution_deadline"] == 123
        assert plan.payload[MARKER_KEY] == {
            "outcome": kind.value,
            "reason": "why",
            "exit_code": 3,
            "finalized": True,
        }
        assert read_marker(plan.payload) == plan.payload[MARKER_KEY]
    else:
        assert plan.payload is None


@pytest.mark.parametrize(
    "event",
    [None, {}, {"status": "success"}, {MARKER_KEY: "x"}, {MARKER_KEY: {"outcome": "success"}}],
)
def test_classic_events_have_no_marker(event: object) -> None:
    assert read_marker(event) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcome", "raises"),
    [
        ("success", None),
        ("skipped", AirflowSkipException),
        ("fail_fast", AirflowFailException),
        ("failed", AirflowException),
        ("fallback", AirflowException),
    ],
)
def test_end_finalized_task(outcome: str, raises: type[BaseException] | None) -> None:
    marker = {"outcome": outcome, "reason": "the reason", "finalized": True}
    if raises is None:
        assert end_finalized_task(marker) is None
        return
    with pytest.raises(raises, match="the reason") as info:
        end_finalized_task(marker)
    if raises is AirflowException:
        assert not isinstance(info.value, AirflowFailException | AirflowSkipException)
