"""``kpo-finalizer demo``: drive the scripted pods to completion, watch the tasks end, judge, report.

The clock starts once the triggerer has taken every trigger; each pod's base container then
exits at its planned time, and the task's terminal state is polled from Airflow's own
``task_instance`` table (every 0.2 s, so latencies carry up to that much polling error).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

from finalizer.bench.report import command_line, machine, write_json
from finalizer.demo.cleanup import demo_session
from finalizer.demo.results import Observed, TaskResult, render, summarize
from finalizer.demo.scenario import NO_XCOM, TaskPlan, plan

POLL_INTERVAL = 0.2
TERMINAL = frozenset({"success", "failed", "skipped", "up_for_retry", "upstream_failed", "removed"})


class Progress:
    """One status line: rewritten in place on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def say(self, text: str) -> None:
        self._end_line()
        print(text, file=self.stream, flush=True)

    def status(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
            self.stream.flush()
            self._open = True
        elif force or now - self._last >= 3.0:
            print(text, file=self.stream, flush=True)
            self._last = now

    _open = False

    def _end_line(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def default_timeout(tasks: list[TaskPlan]) -> float:
    """Seconds the run may take after the clock starts: the last finish plus generous slack."""
    return max(t.finish_after for t in tasks) + 45.0 + 0.5 * len(tasks)


def drive(world: Any, tasks: list[TaskPlan], timeout: float, progress: Progress) -> dict[str, Observed]:
    """Finish pods on schedule, record completion and terminal times; stop when all ended or late."""
    pending = sorted(tasks, key=lambda t: t.finish_after)
    completed_at: dict[str, float] = {}
    done_at: dict[str, float] = {}
    states: dict[str, str | None] = {}
    start = time.monotonic()
    deadline = start + timeout
    while True:
        now = time.monotonic()
        while pending and pending[0].finish_after <= now - start:
            task = pending.pop(0)
            world.finish_pod(task)
            completed_at[task.task_id] = time.monotonic()
        states = world.ti_states()
        seen = time.monotonic()
        for task_id, state in states.items():
            if state in TERMINAL and task_id not in done_at:
                done_at[task_id] = seen
        counts = _count(states)
        progress.status(
            f"[{seen - start:5.1f}s] pods finished {len(completed_at)}/{len(tasks)}  "
            f"tasks ended {len(done_at)}/{len(tasks)}  {counts}"
        )
        if len(done_at) == len(tasks) and not pending:
            break
        if not world.triggerer.is_running():
            progress.say("the airflow triggerer exited: see its log (use --keep to keep it)")
            break
        if seen >= deadline:
            progress.say(f"gave up after {timeout:.0f} s: {len(tasks) - len(done_at)} task(s) never ended")
            break
        time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - now)))
    progress.say(
        f"all tasks ended after {time.monotonic() - start:.1f} s" if len(done_at) == len(tasks) else ""
    )
    return {
        t.task_id: Observed(
            state=states.get(t.task_id),
            xcom=NO_XCOM,
            pod_deleted=False,
            completed_at=completed_at.get(t.task_id),
            done_at=done_at.get(t.task_id),
        )
        for t in tasks
    }


def _count(states: dict[str, str | None]) -> str:
    by: dict[str, int] = {}
    for state in states.values():
        key = state or "none"
        by[key] = by.get(key, 0) + 1
    return " ".join(f"{k} {v}" for k, v in sorted(by.items()))


def verify(world: Any, tasks: list[TaskPlan], observed: dict[str, Observed]) -> list[TaskResult]:
    """Fill in XCom and pod facts (giving pod deletion a short grace) and pair with the plan."""
    deadline = time.monotonic() + 5.0
    gone: dict[str, bool] = {}
    while True:
        gone = {t.task_id: world.pod_gone(t) for t in tasks}
        if all(gone.values()) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    results = []
    for t in tasks:
        xcom = _read_xcom(world, t.task_id, "return_value")
        keys = {}
        if t.multiple_outputs:
            keys = {k: _read_xcom(world, t.task_id, k) for k in t.expected_xcom}
        o = observed[t.task_id]
        results.append(
            TaskResult(t, Observed(o.state, xcom, gone[t.task_id], o.completed_at, o.done_at, keys))
        )
    return results


def _read_xcom(world: Any, task_id: str, key: str) -> Any:
    try:
        return world.xcom(task_id, key)
    except KeyError:
        return NO_XCOM


def wait_for_triggers(world: Any, count: int, progress: Progress, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (taken := world.assigned_triggers()) < count:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the triggerer took only {taken} of {count} triggers in {timeout:.0f} s")
        if not world.triggerer.is_running():
            raise RuntimeError(f"airflow triggerer exited:\n{world.triggerer.logs()[-3000:]}")
        time.sleep(POLL_INTERVAL)
    progress.say(f"the triggerer runs all {count} triggers; pods start finishing now")


def run_demo(
    *,
    pods: int,
    json_path: str | None,
    timeout: float | None = None,
    keep: bool = False,
    argv: Sequence[str] | None = None,
) -> int:
    """The whole demo; returns the process exit code (0 only when every task is ok)."""
    from finalizer.demo.world import World

    # Import-time noise from Airflow's dependencies (e.g. starlette's httpx notice), not ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*starlette\.testclient.*")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
    tasks = plan(pods)
    progress = Progress()
    began = time.monotonic()
    with demo_session(keep=keep) as (home, cleanup):
        world = World(home, cleanup, progress.say)
        world.build(tasks)
        wait_for_triggers(world, len(tasks), progress)
        observed = drive(world, tasks, timeout or default_timeout(tasks), progress)
        results = verify(world, tasks, observed)
        summary = summarize(results, wall_seconds=time.monotonic() - began)
        if not summary["all_ok"]:
            progress.say(f"triggerer log: {world.triggerer.log_path} (use --keep to keep it)")
        progress.say(render(results, summary))
        if json_path:
            payload = {
                "command": command_line(argv),
                "machine": machine(),
                "summary": summary,
                "tasks": [r.as_json() for r in results],
            }
            progress.say(f"JSON written to {write_json(json_path, payload)}")
    return 0 if summary["all_ok"] else 1
