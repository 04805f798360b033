"""The demo's script: which pods finish when, with which XCom and exit code, and what each
task must end as.

Pure data, decided up front, so a run can be checked against it task by task: most pods
succeed with varied JSON XComs (dict, list, number, string, unicode, empty file; one with
``multiple_outputs``, so each key is an XCom of its own too), every
seventh fails with exit code 1, one exits with a ``skip_on_exit_code`` code and must be
SKIPPED. Finish times are staggered so completions arrive while others are in flight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

ExpectedState = Literal["success", "failed", "skipped"]

#: ``skip_on_exit_code`` given to every demo task; only the scripted skip task exits with it.
SKIP_EXIT_CODE = 99
NAMESPACE = "demo"
DAG_ID = "kpo_finalizer_demo"
#: The task (if N is large enough) whose dict XCom is also pushed key by key.
MULTIPLE_OUTPUTS_INDEX = 4


class _NoXCom:
    """Marker: the task must end with no ``return_value`` XCom at all."""

    def __repr__(self) -> str:
        return "NO_XCOM"


NO_XCOM: Any = _NoXCom()


@dataclass(frozen=True)
class TaskPlan:
    """One demo task: its pod's script and the outcome the run must show."""

    index: int
    finish_after: float  # seconds after the tasks are deferred
    exit_code: int
    xcom_file: str | None  # content of /airflow/xcom/return.json; None = empty file
    expected_state: ExpectedState
    expected_xcom: Any = field(default=NO_XCOM)
    multiple_outputs: bool = False  # push each key of the dict as its own XCom too

    @property
    def task_id(self) -> str:
        return f"pod_{self.index:03d}"

    @property
    def pod_name(self) -> str:
        return f"kpo-demo-{self.index:03d}"


def _xcom_value(index: int) -> Any:
    """A varied JSON value per task (the empty-file case is handled by the caller)."""
    kind = index % 6
    if kind == 0:
        return {"task": index, "ok": True, "rows": [index, index * 2], "nested": {"k": "v"}}
    if kind == 1:
        return [index, "two", 3.5, None, {"x": index}]
    if kind == 2:
        return index * 1000 + 7
    if kind == 3:
        return f"result of task {index}"
    if kind == 4:
        return {"unicode": "żółć ✓ 日本", "index": index}
    return None  # kind 5: empty return.json -> no XCom


def plan(pods: int, *, first_finish: float = 1.0, spread: float | None = None) -> list[TaskPlan]:
    """The scripted tasks for a run of ``pods`` pods (≥ 1).

    Pods finish between ``first_finish`` and ``first_finish + spread`` seconds; the default
    spread grows with N (0.3 s per pod, capped at 15 s) so big runs overlap completions.
    """
    if pods < 1:
        raise ValueError(f"--pods must be at least 1, got {pods}")
    if spread is None:
        spread = min(15.0, 0.3 * pods)
    skip_index = 1 if pods >= 2 else -1
    tasks: list[TaskPlan] = []
    for i in range(pods):
        finish_after = first_finish + (spread * i / pods)
        if i == skip_index:
            tasks.append(TaskPlan(i, finish_after, SKIP_EXIT_CODE, None, "skipped"))
        elif i % 7 == 3:
            tasks.append(TaskPlan(i, finish_after, 1, None, "failed"))
        else:
            value = _xcom_value(i)
            if value is None:
                tasks.append(TaskPlan(i, finish_after, 0, None, "success"))
            else:
                multiple = i == MULTIPLE_OUTPUTS_INDEX
                tasks.append(TaskPlan(i, finish_after, 0, json.dumps(value), "success", value, multiple))
    return tasks
