"""``bench e2e --scenarios paused``: the drain story, a DAG paused while its pods run.

Platform teams pause DAGs to drain a cluster before maintenance. Once every task is deferred, the
bench pauses the DAG (``dag.is_paused``, what the UI's toggle writes) and watches each task from
its base container's end until a bound (``bound`` seconds after the last base end):

* classic: the trigger fires, the task goes back to SCHEDULED, and the scheduler never queues a
  task of a paused DAG, so the finished pod (its sidecar still running) holds its node;
* finalizing: the triggerer does not look at pausing, so the task ends and its pod is deleted.

Per variant: the state of each task at the bound, base end → terminal and pod lifetime after
the base end for what ended or went, and the pods still alive at the bound (their lifetime is at
least the bound: counted, not averaged in). Then the DAG is unpaused and the time to drain the
rest (the classic tasks' worker runs) is recorded, which also leaves the world clean, and every
task of both variants is checked after it: succeeded, its XCom correct, its pod gone
(``as_expected``, the bench's exit code).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from finalizer.bench.e2e import TERMINAL, PodSampler, _states, _wait
from finalizer.bench.report import latency_summary, render_table

#: Seconds after the last base-container end until which the paused DAG is watched.
DEFAULT_BOUND = 60.0


def set_paused(dag_id: str, paused: bool) -> None:
    """Pause or unpause a DAG as the UI's toggle does (the ``dag.is_paused`` column)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=paused))


def run_paused(
    world: dict[str, Any], variant: str, tasks: int, *, bound: float, timeout: float
) -> dict[str, Any]:
    """One variant of the paused scenario (see the module docstring)."""
    env, stack, kube = world["env"], world["stack"], world["kube"]
    dag_id = f"bench_{variant}_paused"
    with PodSampler(kube) as sampler:
        run = env.create_run(dag_id)
        _wait(
            f"{dag_id}: every task deferred",
            lambda: sum(s == "deferred" for s, _ in _states(env, dag_id, run.run_id).values()) == tasks,
            timeout,
            stack,
        )
        set_paused(dag_id, True)
        paused_at = time.time()
        # A pod finalized within one sample of its end is seen gone, never ended: count it too.
        _wait(
            f"{dag_id}: every base container ended",
            lambda: len({k for k in (*sampler.base_end, *sampler.gone) if k[0] == dag_id}) == tasks,
            timeout,
            stack,
        )
        ends = [t for k, t in (*sampler.gone.items(), *sampler.base_end.items()) if k[0] == dag_id]
        until = max(ends) + bound

        def settled() -> bool:
            states = _states(env, dag_id, run.run_id)
            done = all(s in TERMINAL for s, _ in states.values())
            gone = sum(k[0] == dag_id for k in sampler.gone) == tasks
            return (done and gone) or time.time() >= until

        _wait(f"{dag_id}: the bound ({bound:.0f} s after the last base end)", settled, bound + timeout, stack)
        at_bound = time.time()
        states = _states(env, dag_id, run.run_id)
        base_end = {k[1]: t for k, t in sampler.base_end.items() if k[0] == dag_id}
        gone = {k[1]: t for k, t in sampler.gone.items() if k[0] == dag_id}
        rows = [
            _row(env, dag_id, run.run_id, variant, task_id, state, end, base_end, gone)
            for task_id, (state, (end, _)) in sorted(states.items())
        ]
        set_paused(dag_id, False)
        unpaused = time.time()
        _wait(
            f"{dag_id}: drained after unpausing",
            lambda: (
                all(s in TERMINAL for s, _ in _states(env, dag_id, run.run_id).values())
                and sum(k[0] == dag_id for k in sampler.gone) == tasks
            ),
            timeout,
            stack,
        )
        drained = time.time() - unpaused
        after = _after_drain(env, dag_id, run.run_id, variant, tasks, sampler)
    latency = latency_summary([r["latency"] for r in rows if r["latency"] is not None])
    lifetime = latency_summary([r["pod_after_base_end"] for r in rows if r["pod_after_base_end"] is not None])
    return {
        "variant": variant,
        "scenario": "paused",
        "tasks": len(rows),
        "bound_s": bound,
        "watched_s": at_bound - paused_at,
        "success": sum(r["state"] == "success" for r in rows),
        "terminal_at_bound": sum(r["state"] in TERMINAL for r in rows),
        "states_at_bound": dict(Counter(str(r["state"]) for r in rows)),
        "xcom_correct": sum(r["xcom_ok"] for r in rows),
        "pods_alive_at_bound": sum(not r["pod_deleted"] for r in rows),
        "latency_p50": latency["p50"],
        "latency_max": latency["max"],
        "pod_after_base_end_p50": lifetime["p50"],
        "pod_after_base_end_max": lifetime["max"],
        "drained_after_unpause_s": drained,
        **after,
        "rows": rows,
    }


def _after_drain(
    env: Any, dag_id: str, run_id: str, variant: str, tasks: int, sampler: PodSampler
) -> dict[str, Any]:
    """Each task's end once the DAG is unpaused and drained: its state, its XCom, its pod."""
    states = _states(env, dag_id, run_id)
    return {
        "states_after_drain": dict(Counter(str(state) for state, _ in states.values())),
        "success_after_drain": sum(state == "success" for state, _ in states.values()),
        "xcom_correct_after_drain": sum(
            _xcom_ok(env, dag_id, run_id, variant, task_id) for task_id in states
        ),
        "pods_left_after_drain": tasks - sum(k[0] == dag_id for k in sampler.gone),
    }


def as_expected(result: dict[str, Any]) -> bool:
    """The bench's verdict on one paused variant.

    Both variants: after the drain every task succeeded with its XCom and no pod is left. The
    finalizing one also at the bound (while paused): that is its claim. A classic task waiting in
    SCHEDULED at the bound is the behaviour shown, not a failure.
    """
    tasks = result["tasks"]
    drained = (
        result["success_after_drain"] == tasks
        and result["xcom_correct_after_drain"] == tasks
        and result["pods_left_after_drain"] == 0
    )
    if result["variant"] == "classic":
        return bool(drained)
    return bool(
        drained
        and result["success"] == tasks
        and result["xcom_correct"] == tasks
        and result["pods_alive_at_bound"] == 0
    )


def _xcom_ok(env: Any, dag_id: str, run_id: str, variant: str, task_id: str) -> bool:
    try:
        xcom = env.get_xcom(dag_id, run_id, task_id, "return_value")
    except KeyError:
        xcom = None
    return bool(xcom == {"variant": variant, "scenario": "paused", "i": int(task_id.split("_")[1])})


def _row(
    env: Any,
    dag_id: str,
    run_id: str,
    variant: str,
    task_id: str,
    state: str | None,
    end_date: Any,
    base_end: dict[str, float],
    gone: dict[str, float],
) -> dict[str, Any]:
    ended, went = base_end.get(task_id), gone.get(task_id)
    terminal = state in TERMINAL and end_date is not None
    return {
        "task_id": task_id,
        "state": state,
        "latency": end_date.timestamp() - ended if terminal and ended is not None else None,
        "pod_after_base_end": went - ended if went is not None and ended is not None else None,
        "pod_deleted": went is not None,
        "xcom_ok": _xcom_ok(env, dag_id, run_id, variant, task_id),
    }


def _drain_cell(r: dict[str, Any]) -> str:
    n = r["tasks"]
    return (
        f"{r['success_after_drain']}/{n}, {r['xcom_correct_after_drain']}/{n}, {r['pods_left_after_drain']}"
    )


def render_paused(results: list[dict[str, Any]]) -> str:
    rows = [
        (
            r["variant"],
            f"{r['terminal_at_bound']}/{r['tasks']}",
            ", ".join(f"{k} {v}" for k, v in sorted(r["states_at_bound"].items())),
            f"{r['xcom_correct']}/{r['tasks']}",
            r["latency_p50"],
            r["latency_max"],
            r["pod_after_base_end_p50"],
            r["pod_after_base_end_max"],
            f"{r['pods_alive_at_bound']}/{r['tasks']}",
            r["drained_after_unpause_s"],
            _drain_cell(r),
        )
        for r in results
    ]
    bound = results[0]["bound_s"] if results else DEFAULT_BOUND
    return render_table(
        (
            "variant (DAG paused)",
            "terminal",
            f"states at bound ({bound:.0f} s)",
            "XCom ok",
            "end→done p50 s",
            "max s",
            "pod after end p50 s",
            "max s",
            "pods alive at bound",
            "drain after unpause s",
            "after drain (ok, XCom ok, pods left)",
        ),
        rows,
    )
