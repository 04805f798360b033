"""``bench e2e --scenarios jobs``: Kubernetes Jobs, the provider's operator against the finalizing one.

The slow test runs the bench small (a full Airflow and the fake cluster with its job controller,
both variants, one Job of parallelism 1 and one of 3) through the CLI and asserts on the JSON's
correctness fields, not on timings. The pure figures are table-tested from synthetic rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finalizer.bench import e2e
from finalizer.bench.e2e_jobs_figures import (
    expected_xcom,
    job_completed,
    render_jobs,
    round_trips_avoided,
    summarize,
)

TASKS = 2  # job_000 with parallelism 1, job_001 with parallelism 3


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.timeout(1200)
def test_both_variants_push_what_the_pods_wrote_and_delete_every_pod(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finalizer.cli import main

    out = tmp_path / "bench-e2e-jobs.json"
    code = main(["bench", "e2e", "--tasks", str(TASKS), "--scenarios", "jobs", "--json", str(out)])
    written = json.loads(out.read_text())
    assert code == 0, capsys.readouterr().out[-3000:]
    assert written["command"].startswith("kpo-finalizer")  # e2e.main records sys.argv, not main()'s argv
    assert written["metadata_db"] in ("postgresql", "sqlite")
    by_variant = {r["variant"]: r for r in written["results"]}
    assert sorted(by_variant) == ["classic", "finalizing"]
    for variant, result in by_variant.items():
        assert result["scenario"] == "jobs"
        for size, pods in (("1", 1), ("3", 3)):
            group = result["by_parallelism"][size]
            assert group["tasks"] == 1, variant
            assert group["success"] == 1, variant
            assert group["xcom_correct"] == 1, variant  # the list the pods wrote, unwrapped for one
            assert group["job_correct"] == 1, variant  # `job`: Complete, every completion succeeded
            assert group["pods"] == pods, variant  # every pod of the Job seen ending
            assert group["pods_deleted"] == pods, variant  # on_finish_action=delete_pod
        for row in result["rows"]:
            assert row["latency"] is not None
            assert len(row["pod_lifetimes"]) == row["parallelism"]
    # The classic task runs twice on a worker (execute, then execute_complete); ours once.
    assert all(r["times_queued"] == 2 for r in by_variant["classic"]["rows"])
    assert all(r["times_queued"] == 1 for r in by_variant["finalizing"]["rows"])
    table = capsys.readouterr().out
    assert "round trips avoided" in table
    assert out.with_suffix(".png").exists() or "PNG not written" in table


def _row(parallelism: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task_id": "job_000",
        "parallelism": parallelism,
        "state": "success",
        "pods": parallelism,
        "latency": 1.0,
        "pod_lifetimes": [0.5] * parallelism,
        "pod_after_base_end": 0.5,
        "pod_deleted": True,
        "times_queued": 1,
        "xcom_ok": True,
        "job_ok": True,
    }
    return {**row, **over}


@pytest.mark.parametrize(
    ("parallelism", "expected"),
    [
        (1, {"variant": "classic", "scenario": "jobs", "i": 4}),
        (3, [{"variant": "classic", "scenario": "jobs", "i": 4}] * 3),
    ],
)
def test_expected_xcom_is_unwrapped_for_one_pod_only(parallelism: int, expected: Any) -> None:
    assert expected_xcom("classic", "jobs", 4, parallelism) == expected


def _job(conditions: list[tuple[str, str]], succeeded: int | None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": t, "status": s} for t, s in conditions]}
    if succeeded is not None:
        status["succeeded"] = succeeded
    return {"metadata": {"name": "j"}, "status": status}


@pytest.mark.parametrize(
    ("job", "parallelism", "ok"),
    [
        (_job([("SuccessCriteriaMet", "True"), ("Complete", "True")], 3), 3, True),
        (_job([("Complete", "True")], 1), 1, True),
        (_job([("Complete", "True")], 2), 3, False),  # a completion missing
        (_job([("Complete", "False")], 3), 3, False),
        (_job([("FailureTarget", "True"), ("Failed", "True")], 0), 1, False),
        (_job([], None), 1, False),
        (None, 1, False),  # no `job` XCom pushed
        ("a string", 1, False),
    ],
)
def test_job_completed_reads_the_conditions(job: Any, parallelism: int, ok: bool) -> None:
    assert job_completed(job, parallelism) is ok


def test_summarize_counts_per_parallelism_and_over_every_pod() -> None:
    rows = [
        _row(1, latency=1.0, pod_lifetimes=[0.2]),
        _row(3, latency=3.0, pod_lifetimes=[0.1, 0.4, 0.7], times_queued=2),
        _row(3, state="failed", latency=None, pod_lifetimes=[0.3], pods=3, xcom_ok=False, job_ok=False),
    ]
    figures = summarize(rows)
    assert figures["tasks"] == 3
    assert figures["success"] == 2
    assert figures["pods"] == 7
    assert figures["pods_deleted"] == 5
    three = figures["by_parallelism"]["3"]
    assert (three["tasks"], three["success"], three["xcom_correct"], three["job_correct"]) == (2, 1, 1, 1)
    assert (three["pods"], three["pods_deleted"]) == (6, 4)
    assert three["latency_p50"] == 3.0  # the failed task has no latency: not counted as 0
    assert three["pod_after_base_end_max"] == 0.7
    assert three["worker_runs"] == 3
    assert three["worker_runs_per_task"] == 1.5
    assert figures["by_parallelism"]["1"]["pod_after_base_end_p50"] == 0.2


def _result(variant: str, runs: int) -> dict[str, Any]:
    rows = [_row(1, times_queued=runs), _row(3, times_queued=runs)]
    return {"variant": variant, "scenario": "jobs", **summarize(rows), "rows": rows}


@pytest.mark.parametrize(
    ("variants", "avoided"),
    [((("classic", 2), ("finalizing", 1)), 1), ((("finalizing", 1),), None), ((("classic", 2),), None)],
)
def test_round_trips_avoided_needs_both_variants(
    variants: tuple[tuple[str, int], ...], avoided: int | None
) -> None:
    results = [_result(v, runs) for v, runs in variants]
    assert round_trips_avoided(results, "jobs", "3") == avoided
    assert round_trips_avoided(results, "jobs-contention", "3") is None


def test_table_has_a_line_per_variant_and_parallelism() -> None:
    results = [_result("classic", 2), _result("finalizing", 1)]
    lines = e2e.render({"results": results}).splitlines()
    assert "round trips avoided" in lines[0]
    body = [line.split() for line in lines[2:]]
    assert [(cells[1], cells[2]) for cells in body] == [
        ("classic", "1"),
        ("classic", "3"),
        ("finalizing", "1"),
        ("finalizing", "3"),
    ]
    assert body[2][-1] == "1"  # classic 1 worker run per task more than ours
    assert body[0][-1] == "-"
    assert render_jobs(results) == "\n".join(lines)


@pytest.mark.parametrize(
    ("variant", "operator"),
    [
        ("classic", "from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator"),
        ("finalizing", "from triggers.job_operator import FinalizingKubernetesJobOperator"),
    ],
)
def test_each_variant_has_its_own_dag_file_with_the_values_written_in(variant: str, operator: str) -> None:
    import ast

    from finalizer.bench import e2e_jobs

    source = e2e_jobs.dag_source(variant, job_poll_interval=2.5)
    ast.parse(source)
    assert f"{operator} as operator" in source
    assert "POLL = 2.5" in source
    assert f'variant = "{variant}"' in source
    assert f'kubernetes_conn_id="{e2e_jobs.CONNECTION}"' in source
    assert "@" not in source  # every placeholder replaced


@pytest.mark.airflow
def test_both_dag_files_parse_in_a_dagbag(tmp_path: Path) -> None:
    """Both variants' files import cleanly in Airflow's DagBag, each with its two scenarios; and
    the fillers of ``jobs-contention``."""
    from finalizer.bench import e2e_jobs
    from tests.cli.test_examples import parse_dags

    dags = tmp_path / "dags"
    dags.mkdir()
    for variant in e2e_jobs.OPERATORS:
        (dags / f"bench_e2e_jobs_{variant}.py").write_text(e2e_jobs.dag_source(variant))
    (dags / "bench_e2e_job_fillers.py").write_text(e2e_jobs.FILLERS_SOURCE)
    result = parse_dags(dags, tmp_path, {"KPO_BENCH_TASKS": "2"})
    assert result["errors"] == {}
    assert result["dags"] == {
        **{
            e2e_jobs.dag_id(v, s): ["job_000", "job_001"]
            for v in e2e_jobs.OPERATORS
            for s in e2e_jobs.SCENARIOS
        },
        e2e_jobs.FILLERS: ["filler_000", "filler_001"],
    }


def test_jobs_scenarios_are_known_to_the_bench() -> None:
    assert {"jobs", "jobs-contention"} <= set(e2e.SCENARIOS)
    with pytest.raises(ValueError, match="choose from"):
        e2e.run(1, ["job"])
