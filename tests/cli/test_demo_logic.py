"""The demo's script and judgement are pure: what a run must show, and what counts as ok."""

from __future__ import annotations

import json
from typing import Any

import pytest

from finalizer.demo.results import Observed, TaskResult, render, summarize, xcom_matches
from finalizer.demo.scenario import NO_XCOM, SKIP_EXIT_CODE, TaskPlan, plan


def test_plan_varies_outcomes_and_staggers() -> None:
    tasks = plan(20)
    states = [t.expected_state for t in tasks]
    assert states.count("skipped") == 1
    assert states.count("failed") == 3  # indices 3, 10, 17
    assert states.count("success") == 16
    finish = [t.finish_after for t in tasks]
    assert finish == sorted(finish)
    assert len(set(finish)) == 20
    values = [t.expected_xcom for t in tasks if t.expected_xcom is not NO_XCOM]
    assert {type(v) for v in values} == {dict, list, int, str}
    assert any(t.expected_state == "success" and t.expected_xcom is NO_XCOM for t in tasks)  # empty file


def test_plan_has_one_multiple_outputs_task_with_a_dict() -> None:
    multiple = [t for t in plan(20) if t.multiple_outputs]
    assert len(multiple) == 1
    assert isinstance(multiple[0].expected_xcom, dict)
    assert not any(t.multiple_outputs for t in plan(4))


def test_multiple_outputs_needs_every_key() -> None:
    p = TaskPlan(4, 1.0, 0, '{"a": 1, "b": [2]}', "success", {"a": 1, "b": [2]}, multiple_outputs=True)
    whole = {"a": 1, "b": [2]}
    good = TaskResult(p, Observed("success", whole, True, 1.0, 2.0, {"a": 1, "b": [2]}))
    missing = TaskResult(p, Observed("success", whole, True, 1.0, 2.0, {"a": 1, "b": NO_XCOM}))
    wrong = TaskResult(p, Observed("success", whole, True, 1.0, 2.0, {"a": "1", "b": [2]}))
    assert good.ok
    assert not missing.xcom_ok
    assert not wrong.xcom_ok
    assert good.as_json()["key_xcoms"] == {"a": 1, "b": [2]}


def test_plan_files_hold_the_expected_json() -> None:
    for t in plan(12):
        if t.xcom_file is None:
            assert t.expected_xcom is NO_XCOM
        else:
            assert json.loads(t.xcom_file) == t.expected_xcom


@pytest.mark.parametrize(
    ("pods", "states"),
    [
        (1, ["success"]),
        (2, ["success", "skipped"]),
        (4, ["success", "skipped", "success", "failed"]),
    ],
)
def test_small_plans(pods: int, states: list[str]) -> None:
    tasks = plan(pods)
    assert [t.expected_state for t in tasks] == states
    skip = [t for t in tasks if t.expected_state == "skipped"]
    assert all(t.exit_code == SKIP_EXIT_CODE for t in skip)


def test_plan_rejects_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan(0)


@pytest.mark.parametrize(
    ("expected", "observed", "ok"),
    [
        ({"a": 1}, {"a": 1}, True),
        ({"a": 1}, {"a": 1.0}, False),
        ({"a": 1}, '{"a": 1}', False),  # double-encoded JSON is wrong
        ([1, "x", None], [1, "x", None], True),
        (1, True, False),
        (NO_XCOM, NO_XCOM, True),
        (NO_XCOM, None, False),
        (None, NO_XCOM, False),
        ("żółć", "żółć", True),
    ],
)
def test_xcom_matches(expected: Any, observed: Any, ok: bool) -> None:
    assert xcom_matches(expected, observed) is ok


def _result(
    plan_state: str, state: str | None, xcom: Any = NO_XCOM, deleted: bool = True, lat: float | None = 1.0
) -> TaskResult:
    p = TaskPlan(0, 1.0, 0, None, plan_state)  # type: ignore[arg-type]
    done = None if lat is None else 10.0 + lat
    return TaskResult(p, Observed(state, xcom, deleted, 10.0 if lat is not None else None, done))


@pytest.mark.parametrize(
    ("result", "ok"),
    [
        (_result("success", "success"), True),
        (_result("success", "failed"), False),
        (_result("success", "success", xcom={"unexpected": 1}), False),
        (_result("success", "success", deleted=False), False),
        (_result("skipped", "skipped"), True),
        (_result("failed", None, lat=None), False),
    ],
)
def test_task_ok(result: TaskResult, ok: bool) -> None:
    assert result.ok is ok


def test_summary_and_render() -> None:
    results = [_result("success", "success", lat=1.0), _result("success", "success", lat=3.0)]
    summary = summarize(results, wall_seconds=12.0)
    assert summary["all_ok"] is True
    assert summary["completion_to_done_p50"] == 2.0
    assert summary["completion_to_done_max"] == 3.0
    text = render(results, summary)
    assert "ALL OK" in text
    assert "WRONG" not in text
    bad = [*results, _result("failed", None, lat=None)]
    summary = summarize(bad, wall_seconds=1.0)
    assert summary["all_ok"] is False
    assert summary["states"] == {"success": 2, "unfinished": 1}
    assert "NOT ALL OK" in render(bad, summary)
    assert summarize([], wall_seconds=0)["all_ok"] is False


def test_task_json_is_serializable() -> None:
    row = _result("success", "success", xcom={"a": [1]}).as_json()
    assert json.loads(json.dumps(row))["xcom"] == {"a": [1]}
    assert row["completion_to_done_seconds"] == 1.0
