"""The figures of ``bench e2e``'s Jobs scenarios, from its rows: pure, so a JSON can be re-read.

A row is one Job task: ``parallelism``, ``state``, ``latency`` (last base-container end → task
terminal), ``pod_lifetimes`` (each pod's lifetime after its base container ended, pods that went),
``pods``, ``pod_deleted``, ``times_queued`` (worker runs), ``xcom_ok`` and ``job_ok``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finalizer.bench.report import latency_summary, render_table


def expected_xcom(variant: str, scenario: str, i: int, parallelism: int) -> Any:
    """What ``return_value`` must hold: each pod's XCom in pod order, unwrapped for one pod.

    The fake's kubelet scripts every pod of a template alike, so every pod wrote the same value.
    """
    value = {"variant": variant, "scenario": scenario, "i": i}
    return value if parallelism == 1 else [value] * parallelism


def job_completed(job: Any, parallelism: int) -> bool:
    """The ``job`` XCom is the Job's final state: ``Complete`` and every completion succeeded."""
    if not isinstance(job, dict):
        return False
    status = job.get("status") or {}
    complete = any(
        c.get("type") == "Complete" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return complete and status.get("succeeded") == parallelism


def _group(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    latency = latency_summary([r["latency"] for r in rows if r["latency"] is not None])
    lifetime = latency_summary([t for r in rows for t in r["pod_lifetimes"]])
    return {
        "tasks": len(rows),
        "success": sum(r["state"] == "success" for r in rows),
        "xcom_correct": sum(bool(r["xcom_ok"]) for r in rows),
        "job_correct": sum(bool(r["job_ok"]) for r in rows),
        "pods": sum(r["pods"] for r in rows),
        "pods_deleted": sum(len(r["pod_lifetimes"]) for r in rows),
        "latency_p50": latency["p50"],
        "latency_p95": latency["p95"],
        "latency_max": latency["max"],
        "pod_after_base_end_p50": lifetime["p50"],
        "pod_after_base_end_p95": lifetime["p95"],
        "pod_after_base_end_max": lifetime["max"],
        "worker_runs": sum(r["times_queued"] for r in rows),
        "worker_runs_per_task": sum(r["times_queued"] for r in rows) / max(1, len(rows)),
    }


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """All tasks' figures, and the same per ``parallelism`` (``by_parallelism``, keyed by str)."""
    sizes = sorted({int(r["parallelism"]) for r in rows})
    return {
        **_group(rows),
        "by_parallelism": {str(p): _group([r for r in rows if r["parallelism"] == p]) for p in sizes},
    }


def round_trips_avoided(results: Sequence[dict[str, Any]], scenario: str, parallelism: str) -> int | None:
    """Classic worker runs minus finalizing ones, for one scenario and parallelism; None without both."""
    runs = {
        r["variant"]: r["by_parallelism"][parallelism]["worker_runs"]
        for r in results
        if r["scenario"] == scenario and parallelism in r["by_parallelism"]
    }
    if "classic" not in runs or "finalizing" not in runs:
        return None
    return int(runs["classic"] - runs["finalizing"])


def render_jobs(results: Sequence[dict[str, Any]]) -> str:
    """One line per scenario, variant and parallelism."""
    rows = []
    for r in results:
        for size, g in r["by_parallelism"].items():
            rows.append(
                (
                    r["scenario"],
                    r["variant"],
                    int(size),
                    f"{g['success']}/{g['tasks']}",
                    f"{g['xcom_correct']}/{g['tasks']}",
                    f"{g['job_correct']}/{g['tasks']}",
                    g["latency_p50"],
                    g["latency_p95"],
                    g["pod_after_base_end_p50"],
                    g["pod_after_base_end_p95"],
                    f"{g['pods_deleted']}/{g['pods']}",
                    g["worker_runs_per_task"],
                    round_trips_avoided(results, r["scenario"], size)
                    if r["variant"] == "finalizing"
                    else None,
                )
            )
    return render_table(
        (
            "scenario",
            "variant",
            "parallelism",
            "success",
            "XCom ok",
            "job ok",
            "ends→done p50 s",
            "p95 s",
            "pod after end p50 s",
            "p95 s",
            "pods deleted",
            "worker runs/task",
            "round trips avoided",
        ),
        rows,
    )
