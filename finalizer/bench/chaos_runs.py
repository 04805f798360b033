"""The shared frame of every ``bench chaos`` run: start it, end its pods, settle, resume, judge.

A scenario starts a run (``start``), waits until a finalizer follows its pods, breaks something
while the pods end (``end_pods_over``), and hands over to ``finish``: wait until every task is
terminal or handed to a worker, end the fault, resume the handed-over tasks with a real worker,
and judge each task with the pure checks, keeping its verdict and record in the scenario's result.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finalizer.bench import chaos_tasks as tasks
from finalizer.bench.chaos_checks import TERMINAL, Facts, Verdict, check, summary
from finalizer.bench.chaos_triggerers import Triggerers
from finalizer.bench.chaos_world import NAMESPACE, World

#: Seconds a run may take to settle after its fault ended.
SETTLE_TIMEOUT = 180.0


@dataclass
class Context:
    world: World
    triggerers: Triggerers
    rng: random.Random
    kills: int
    tasks: int
    fault_rate: float
    metadb_outage: float
    worker_agents: frozenset[str]
    say: Any = print


@dataclass
class ScenarioResult:
    name: str
    runs: int = 0
    tasks: int = 0
    kills: int = 0
    faults: int = 0
    restarts: int = 0
    handed_over: int = 0
    unsettled: int = 0
    recovery: list[float] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)  # per kill: completions in flight when it hit
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # "run/task" -> verdict
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # "run/task" -> chaos_checks.summary
    notes: list[str] = field(default_factory=list)


def start(ctx: Context, res: ScenarioResult, label: str, cases: list[tasks.Case]) -> tasks.Run:
    run_id = f"{res.name}_{label}"
    run = tasks.prepare(ctx.world, run_id, cases, f"{res.name[:6]}-{label}".replace("_", "-"))
    res.runs += 1
    res.tasks += len(run.tasks)
    return run


def wait_followed(ctx: Context, run: tasks.Run) -> None:
    from finalizer.testing.polling import wait_for

    wait_for(
        lambda: tasks.followed(ctx.world, run, run.deferred_at), 120, 0.2, f"{run.run_id}'s pods followed"
    )


def end_pods_over(ctx: Context, run: tasks.Run, window: float) -> threading.Thread:
    """End the run's pods evenly over ``window`` seconds, on a thread (returns at once)."""

    def work() -> None:
        step = window / max(1, len(run.tasks) - 1) if len(run.tasks) > 1 else 0.0
        start = time.monotonic()
        for i, task in enumerate(run.tasks):
            delay = start + i * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule of the pods' ends, not a synchronisation
            task.case.drive(ctx.world.kube, NAMESPACE, task.pod)
            run.ended[task.case.task_id] = time.time()

    thread = threading.Thread(target=work, name=f"end-{run.run_id}", daemon=True)
    thread.start()
    return thread


def finish(
    ctx: Context,
    res: ScenarioResult,
    run: tasks.Run,
    since: float,
    end_fault: Callable[[], None],
    before_resume: Callable[[], None] | None = None,
    kill_at: float | None = None,
) -> None:
    """Settle, end the fault, resume handed-over tasks with a worker, judge every task."""
    done = tasks.wait_settled(run, SETTLE_TIMEOUT, ctx.triggerers.keep_alive)
    end_fault()
    if done is None:
        res.unsettled += 1
        res.notes.append(
            f"{run.run_id}: not every task settled within {SETTLE_TIMEOUT:g}s: {tasks.states(run)}"
        )
    else:
        res.recovery.append(max(0.0, done - since))
    if before_resume is not None:
        before_resume()
    tasks.resume(ctx.world, run)
    res.handed_over += len(run.handed_over)
    if run.handed_over:
        res.notes.append(
            f"{run.run_id}: {len(run.handed_over)} of {len(run.tasks)} task(s) handed to a worker"
        )
    found = judge(ctx, res, run)
    if kill_at is not None:
        res.in_flight.append(in_flight_at(run, found, kill_at))


def judge(ctx: Context, res: ScenarioResult, run: tasks.Run) -> dict[str, Facts]:
    from finalizer.testing.polling import wait_for

    names = set(run.names)
    kept = {t.pod for t in run.tasks if t.case.expect.keep_pod}

    def pods_gone() -> bool:
        left = {p["metadata"]["name"] for p in ctx.world.kube.list_pods(NAMESPACE)} & names
        return left <= kept

    with contextlib.suppress(TimeoutError):  # a DELETE is applied at once: a last cleanup's moment
        wait_for(pods_gone, 10, 0.2, "pods deleted")
    found = tasks.facts(ctx.world, run, ctx.worker_agents)
    for task_id, expect in tasks.expected(run).items():
        key = f"{run.run_id}/{task_id}"
        res.verdicts[key] = verdict = check(expect, found[task_id])
        res.records[key] = summary(expect, found[task_id], verdict)
    return found


def in_flight_at(run: tasks.Run, found: dict[str, Facts], at: float) -> int:
    """Tasks whose pod had ended by ``at`` but that were not terminal yet: completions in flight."""
    count = 0
    for task_id, ended in run.ended.items():
        ends = [t.at for t in found[task_id].transitions if t.new in TERMINAL]
        count += ended <= at and (not ends or min(ends) > at)
    return count


def no_fault() -> None:
    return None
