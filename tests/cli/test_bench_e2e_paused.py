"""``bench e2e --scenarios paused``, our half: a paused DAG's finalized tasks end and free their pods.

A full Airflow (api-server, scheduler with LocalExecutor, dag-processor, triggerer; PostgreSQL
when reachable) and the fake cluster, as the bench runs it, both variants: ours ends while
paused; the classic half waits in SCHEDULED with its pods alive, and after unpausing both are
checked (state, XCom, pod) as the bench's verdict does. Plus the verdict as a table, the table,
the PNG (or the message without matplotlib) and the argument checks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from finalizer.bench import e2e, e2e_paused
from finalizer.bench.e2e_plot import plot

pytestmark = [pytest.mark.airflow]

TASKS = 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_paused_dag_finalized_tasks_end_and_their_pods_are_deleted(tmp_path: Path) -> None:
    result = e2e.run(TASKS, ["paused"], run_seconds={"paused": 4.0}, paused_bound=30.0)
    classic, ours = result["results"]
    # The classic half: waiting while paused, then drained by the worker once unpaused, every
    # task checked after it (state, XCom, pod), as the bench's exit code does.
    assert classic["variant"] == "classic"
    assert classic["success"] == 0, classic["states_at_bound"]
    assert classic["pods_alive_at_bound"] == TASKS
    assert classic["states_after_drain"] == {"success": TASKS}
    assert classic["xcom_correct_after_drain"] == TASKS
    assert classic["pods_left_after_drain"] == 0
    assert e2e_paused.as_expected(classic)
    assert ours["scenario"] == "paused"
    assert ours["variant"] == "finalizing"
    # Ended while the DAG was paused, every XCom correct, every pod deleted before the bound.
    assert ours["states_at_bound"] == {"success": TASKS}
    assert ours["xcom_correct"] == TASKS
    assert ours["pods_alive_at_bound"] == 0
    for row in ours["rows"]:
        assert row["pod_deleted"]
        assert row["pod_after_base_end"] is not None
        assert row["pod_after_base_end"] < 30.0
        assert row["latency"] is not None
    assert ours["watched_s"] < 30.0 + 4.0 + 0.3 * TASKS + 30  # settled, not held to the bound
    assert ours["states_after_drain"] == {"success": TASKS}
    assert ours["pods_left_after_drain"] == 0
    assert e2e_paused.as_expected(ours)
    table = e2e.render(result)
    assert "variant (DAG paused)" in table
    assert "finalizing" in table


def _synthetic() -> dict[str, Any]:
    def rows(deleted: bool) -> list[dict[str, Any]]:
        return [
            {
                "task_id": f"pod_00{i}",
                "state": "success" if deleted else "scheduled",
                "latency": 0.4 if deleted else None,
                "pod_after_base_end": 0.2 if deleted else None,
                "pod_deleted": deleted,
                "xcom_ok": deleted,
            }
            for i in range(2)
        ]

    def paused(variant: str, deleted: bool) -> dict[str, Any]:
        return {
            "variant": variant,
            "scenario": "paused",
            "tasks": 2,
            "bound_s": 60.0,
            "watched_s": 61.0,
            "success": 2 if deleted else 0,
            "terminal_at_bound": 2 if deleted else 0,
            "states_at_bound": {"success": 2} if deleted else {"scheduled": 2},
            "xcom_correct": 2 if deleted else 0,
            "pods_alive_at_bound": 0 if deleted else 2,
            "latency_p50": 0.4 if deleted else None,
            "latency_max": 0.4 if deleted else None,
            "pod_after_base_end_p50": 0.2 if deleted else None,
            "pod_after_base_end_max": 0.2 if deleted else None,
            "drained_after_unpause_s": 9.5 if not deleted else 0.1,
            "states_after_drain": {"success": 2},
            "success_after_drain": 2,
            "xcom_correct_after_drain": 2,
            "pods_left_after_drain": 0,
            "rows": rows(deleted),
        }

    return {"results": [paused("classic", False), paused("finalizing", True)]}


def test_paused_table_counts_the_pods_alive_at_the_bound() -> None:
    table = e2e.render(_synthetic())
    lines = table.splitlines()
    assert "states at bound (60 s)" in lines[0]
    classic = next(line for line in lines if line.startswith("classic"))
    assert "scheduled 2" in classic
    assert "2/2" in classic  # pods alive at the bound
    finalizing = next(line for line in lines if line.startswith("finalizing"))
    assert "success 2" in finalizing
    assert "0/2" in finalizing


def _verdict(variant: str, **changed: Any) -> bool:
    (result,) = [r for r in _synthetic()["results"] if r["variant"] == variant]
    return e2e_paused.as_expected({**result, **changed})


@pytest.mark.parametrize(
    ("variant", "changed", "expected"),
    [
        ("classic", {}, True),  # waited while paused (shown, not a failure), drained clean
        ("classic", {"success_after_drain": 1}, False),
        ("classic", {"xcom_correct_after_drain": 1}, False),
        ("classic", {"pods_left_after_drain": 1}, False),
        ("finalizing", {}, True),
        ("finalizing", {"success": 1}, False),  # it must end while paused
        ("finalizing", {"xcom_correct": 1}, False),
        ("finalizing", {"pods_alive_at_bound": 1}, False),
        ("finalizing", {"success_after_drain": 1}, False),
        ("finalizing", {"pods_left_after_drain": 1}, False),
    ],
)
def test_the_paused_verdict_checks_both_variants_after_the_drain(
    variant: str, changed: dict[str, Any], expected: bool
) -> None:
    assert _verdict(variant, **changed) is expected


def test_the_paused_table_shows_the_end_after_the_drain() -> None:
    table = e2e.render(_synthetic())
    assert "after drain (ok, XCom ok, pods left)" in table.splitlines()[0]
    classic = next(line for line in table.splitlines() if line.startswith("classic"))
    assert "2/2, 2/2, 0" in classic


def test_png_beside_the_json_or_a_clear_no(tmp_path: Path) -> None:
    target = tmp_path / "bench-e2e.png"
    written = plot(_synthetic(), target, "kpo-finalizer bench e2e --scenarios paused")
    try:
        import matplotlib  # noqa: F401  # the optional `bench` extra
    except ImportError:
        assert written is False
        assert not target.exists()
    else:
        assert written is True
        assert target.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("scenarios", "variants", "message"),
    [
        (["drained"], e2e.VARIANTS, "unknown scenario(s) ['drained']"),
        ([], e2e.VARIANTS, "unknown scenario(s) []"),
        (["paused"], ("upstream",), "unknown variant(s) ['upstream']"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    scenarios: list[str], variants: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match="choose from") as info:
        e2e.run(1, scenarios, variants=variants)
    assert message in str(info.value)


def test_sampler_times_a_pod_deleted_right_after_its_end_without_a_poll() -> None:
    """The store's observers stamp the base end and the deletion as they happen: a pod finalized
    within one poll of its end (seen on a loaded machine) is still timed. No poll runs here."""
    from finalizer.testing import FakeKube
    from tests.support.polling import eventually_blocking

    with FakeKube.in_thread() as kube:
        kube.create_pod(e2e.NAMESPACE, name="p", labels={"dag_id": "d", "task_id": "t"})
        kube.start(e2e.NAMESPACE, "p")
        with e2e.PodSampler(kube, interval=3600) as sampler:
            before = time.time()
            kube.terminate(e2e.NAMESPACE, "p", "base", 0)
            kube.force_delete(e2e.NAMESPACE, "p")
            eventually_blocking(lambda: ("d", "t") in sampler.gone, what="the deletion observed")
            after = time.time()
        assert before <= sampler.base_end[("d", "t")] <= sampler.gone[("d", "t")] <= after
