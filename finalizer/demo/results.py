"""Judge a demo run: per task observed vs. planned, and the summary (all_ok, p50/p95/max).

Pure functions over what the runner observed, so what "ok" means is tested table by table:
a task is ok when it reached its expected state, its ``return_value`` XCom is exactly the
planned value (or absent when none was planned), and its pod is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finalizer.bench.report import latency_summary, render_table
from finalizer.demo.scenario import NO_XCOM, TaskPlan


@dataclass(frozen=True)
class Observed:
    """What the runner saw for one task once the run ended (or timed out)."""

    state: str | None
    xcom: Any  # the stored return_value, or NO_XCOM
    pod_deleted: bool
    completed_at: float | None  # monotonic time the base container was terminated
    done_at: float | None  # monotonic time the task was first seen in a terminal state
    #: For ``multiple_outputs`` tasks: each planned key → the stored value (or NO_XCOM).
    key_xcoms: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    plan: TaskPlan
    observed: Observed

    @property
    def state_ok(self) -> bool:
        return self.observed.state == self.plan.expected_state

    @property
    def xcom_ok(self) -> bool:
        if not xcom_matches(self.plan.expected_xcom, self.observed.xcom):
            return False
        if self.plan.multiple_outputs:
            keys = self.observed.key_xcoms
            return all(xcom_matches(v, keys.get(k, NO_XCOM)) for k, v in self.plan.expected_xcom.items())
        return True

    @property
    def latency(self) -> float | None:
        """Seconds from base-container end to the task's terminal state."""
        o = self.observed
        if o.completed_at is None or o.done_at is None:
            return None
        return max(0.0, o.done_at - o.completed_at)

    @property
    def ok(self) -> bool:
        return self.state_ok and self.xcom_ok and self.observed.pod_deleted

    def as_json(self) -> dict[str, Any]:
        return {
            "task_id": self.plan.task_id,
            "pod": self.plan.pod_name,
            "exit_code": self.plan.exit_code,
            "expected_state": self.plan.expected_state,
            "state": self.observed.state,
            "expected_xcom": None if self.plan.expected_xcom is NO_XCOM else self.plan.expected_xcom,
            "xcom_expected_absent": self.plan.expected_xcom is NO_XCOM,
            "xcom": None if self.observed.xcom is NO_XCOM else self.observed.xcom,
            "xcom_present": self.observed.xcom is not NO_XCOM,
            "multiple_outputs": self.plan.multiple_outputs,
            "key_xcoms": {k: (None if v is NO_XCOM else v) for k, v in self.observed.key_xcoms.items()},
            "xcom_verified": self.xcom_ok,
            "pod_deleted": self.observed.pod_deleted,
            "completion_to_done_seconds": self.latency,
            "ok": self.ok,
        }


def xcom_matches(expected: Any, observed: Any) -> bool:
    """Exact JSON equality; absent must be absent. ``1 == 1.0 == True`` is not good enough."""
    if expected is NO_XCOM or observed is NO_XCOM:
        return expected is observed
    return _strict_equal(expected, observed)


def _strict_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def summarize(results: list[TaskResult], *, wall_seconds: float) -> dict[str, Any]:
    latencies = [r.latency for r in results if r.latency is not None]
    by_state: dict[str, int] = {}
    for r in results:
        key = r.observed.state or "unfinished"
        by_state[key] = by_state.get(key, 0) + 1
    stats = latency_summary(latencies)
    return {
        "all_ok": bool(results) and all(r.ok for r in results),
        "tasks": len(results),
        "ok": sum(r.ok for r in results),
        "states": by_state,
        "xcom_verified": sum(r.xcom_ok for r in results),
        "pods_deleted": sum(r.observed.pod_deleted for r in results),
        "completion_to_done_p50": stats["p50"],
        "completion_to_done_p95": stats["p95"],
        "completion_to_done_max": stats["max"],
        "wall_seconds": wall_seconds,
    }


def render(results: list[TaskResult], summary: dict[str, Any]) -> str:
    """The per-task table and the summary lines the demo prints."""
    rows = [
        (
            r.plan.task_id,
            r.plan.expected_state,
            r.observed.state or "unfinished",
            r.xcom_ok,
            r.observed.pod_deleted,
            r.latency,
            "ok" if r.ok else "WRONG",
        )
        for r in results
    ]
    table = render_table(
        ("task", "expected", "state", "xcom verified", "pod deleted", "completion→done s", "result"), rows
    )
    lines = [
        table,
        "",
        f"tasks: {summary['tasks']}  ok: {summary['ok']}  states: {summary['states']}",
        "completion→done seconds: p50 {}  p95 {}  max {}".format(
            *(
                "-" if summary[k] is None else f"{summary[k]:.2f}"
                for k in ("completion_to_done_p50", "completion_to_done_p95", "completion_to_done_max")
            )
        ),
        f"wall time: {summary['wall_seconds']:.1f} s",
        "ALL OK" if summary["all_ok"] else "NOT ALL OK: see the rows marked WRONG",
    ]
    return "\n".join(lines)
