"""Pure rules: XCom push plans and the outcome marker."""

from __future__ import annotations

from typing import Any

import pytest

from finalizer.decisions import marker as markers
from finalizer.decisions import outcome as outcomes
from finalizer.decisions import xcom_push
from finalizer.jobs import ClusterRef, FinishSettings, JobSpec, Outcome, OutcomeKind, PodRef, TaskInstanceRef


def _spec(uid: str = "u1", try_number: int = 1) -> JobSpec:
    return JobSpec(
        ti=TaskInstanceRef(id="ti", dag_id="d", task_id="t", run_id="r", try_number=try_number),
        cluster=ClusterRef(),
        pod=PodRef(namespace="ns", name="p", uid=uid),
    )


@pytest.mark.parametrize(
    ("value", "settings", "expected"),
    [
        (None, {}, []),
        ({"a": 1}, {}, [("return_value", {"a": 1}, None)]),
        (None, {"multiple_outputs": True}, []),
        (
            {"a": 1, "b": [2]},
            {"multiple_outputs": True},
            [("a", 1, None), ("b", [2], None), ("return_value", {"a": 1, "b": [2]}, None)],
        ),
        ([1, 2, 3], {"mapped_length": True}, [("return_value", [1, 2, 3], 3)]),
        ({"x": 1}, {"mapped_length": True}, [("return_value", {"x": 1}, 1)]),
        (0, {}, [("return_value", 0, None)]),
        ("", {}, [("return_value", "", None)]),
    ],
)
def test_plan_pushes(
    value: Any, settings: dict[str, Any], expected: list[tuple[str, Any, int | None]]
) -> None:
    plan = xcom_push.plan_pushes(value, FinishSettings(**settings))
    assert [(p.key, p.value, p.mapped_length) for p in plan] == expected


@pytest.mark.parametrize(
    ("value", "settings", "expected"),
    [
        # The failure path (provider ``_push_xcom_with_fan_out``): no TaskMap length, None is fine.
        (None, {"mapped_length": True}, []),
        ([1, 2], {"mapped_length": True}, [("return_value", [1, 2], None)]),
        ("abc", {"mapped_length": True}, [("return_value", "abc", None)]),
        ({"a": 1}, {"multiple_outputs": True}, [("a", 1, None), ("return_value", {"a": 1}, None)]),
        ({"e": 3}, {}, [("return_value", {"e": 3}, None)]),
    ],
)
def test_plan_pushes_for_a_task_that_did_not_succeed(
    value: Any, settings: dict[str, Any], expected: list[tuple[str, Any, int | None]]
) -> None:
    plan = xcom_push.plan_pushes(value, FinishSettings(**settings), succeeded=False)
    assert [(p.key, p.value, p.mapped_length) for p in plan] == expected


def test_multiple_outputs_still_needs_an_object_when_the_task_failed() -> None:
    with pytest.raises(xcom_push.PushRefused, match="got list"):
        xcom_push.plan_pushes([1], FinishSettings(multiple_outputs=True), succeeded=False)


@pytest.mark.parametrize(
    ("value", "settings", "needle"),
    [
        ([1], {"multiple_outputs": True}, "requires the XCom to be a JSON object, got list"),
        ("s", {"multiple_outputs": True}, "got str"),
        ({"": 1}, {"multiple_outputs": True}, "empty string"),
        ("abc", {"mapped_length": True}, "cannot be mapped over"),
        (5, {"mapped_length": True}, "cannot be mapped over"),
        (None, {"mapped_length": True}, "mapped task needs one"),
        (list(range(1025)), {"mapped_length": True}, "at most 1024"),
    ],
)
def test_plan_pushes_refuses_with_a_clear_reason(value: Any, settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(xcom_push.PushRefused, match=needle):
        xcom_push.plan_pushes(value, FinishSettings(**settings))


def test_marker_round_trip_for_the_same_job_only() -> None:
    outcome = Outcome(kind=OutcomeKind.SUCCESS, reason="ok", exit_code=0)
    marker = markers.encode_marker(_spec(), outcome)
    assert "value" not in str(marker)  # no payload inside
    assert markers.decode_marker(marker, _spec()) == outcome
    assert markers.decode_marker(marker, _spec(uid="other")) is None
    assert markers.decode_marker(marker, _spec(try_number=2)) is None


@pytest.mark.parametrize(
    "garbage", [None, "x", 1, [], {"job": "ti:1:u1"}, {"job": "ti:1:u1", "outcome": {"kind": "?"}}]
)
def test_garbage_marker_is_ignored(garbage: Any) -> None:
    assert markers.decode_marker(garbage, _spec()) is None


def test_with_note_appends() -> None:
    base = Outcome(kind=OutcomeKind.FAILED, reason="exit 1")
    assert outcomes.with_note(base, "more").reason == "exit 1; more"
    assert outcomes.with_note(Outcome(kind=OutcomeKind.FAILED), "only").reason == "only"


@pytest.mark.parametrize(
    ("kind", "return_value_pushed", "needed"),
    [
        (OutcomeKind.SUCCESS, True, False),  # the stored return_value is the record
        (OutcomeKind.SUCCESS, False, True),  # nothing pushed (None, do_xcom_push=False, refused)
        (OutcomeKind.FAILED, True, True),  # a failure's XCom is pushed too: it proves nothing
        (OutcomeKind.FAIL_FAST, True, True),
        (OutcomeKind.SKIPPED, True, True),
        (OutcomeKind.FALLBACK, True, True),  # the worker finishes it: recorded
        (OutcomeKind.FAILED, False, True),
    ],
)
def test_marker_needed(kind: OutcomeKind, return_value_pushed: bool, needed: bool) -> None:
    outcome = Outcome(kind=kind, reason="r")
    assert markers.needed(outcome, return_value_pushed=return_value_pushed) is needed


def test_marker_holds_no_log_tail() -> None:
    outcome = Outcome(kind=OutcomeKind.FAILED, reason="exit 1", exit_code=1, log_tail="line\n" * 500)
    value = markers.encode_marker(_spec(), outcome)
    assert "log_tail" not in value["outcome"]
    assert markers.decode_marker(value, _spec()) == outcome.model_copy(update={"log_tail": None})


def test_success_from_a_stored_return_value_names_the_pod() -> None:
    outcome = markers.from_return_value(_spec())
    assert outcome.kind is OutcomeKind.SUCCESS
    assert "ns/p" in outcome.reason


def test_marker_is_the_smallest_record() -> None:
    """Only the job key and the outcome's set fields: no tail, no None, no payload."""
    outcome = Outcome(kind=OutcomeKind.SKIPPED, reason="exit 99 is in skip_on_exit_code", exit_code=99)
    value = markers.encode_marker(_spec(), outcome)
    assert set(value) == {"job", "outcome"}
    assert value["outcome"] == {
        "kind": "skipped",
        "reason": "exit 99 is in skip_on_exit_code",
        "event_status": "success",
        "exit_code": 99,
    }
    assert markers.decode_marker(value, _spec()) == outcome
