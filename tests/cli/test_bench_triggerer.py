"""``kpo-finalizer bench triggerer`` at N = 20: every phase of every variant runs and reports.

A real ``airflow triggerer`` per variant, the fake API in its own process, tasks deferred through
the Execution API. Small windows keep it short; the figures themselves are not judged here (they
depend on the machine), only that they are there and that the finalizing variant ended every
task right, including across the restart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finalizer.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.timeout(900)]

TASKS = 20

#: The keys issue 12 names, for every variant (so runs can be compared by script).
REQUIRED = (
    "tasks",
    "terminal_correct",
    "wrong_state",
    "pods_left",
    "runner_loop_lag_max_s",
    "startup_loop_lag_max_s",
    "startup_all_running_s",
    "heartbeat_age_max_s",
    "canary_late_max_s",
    "burst_all_terminal_s",
    "end_to_terminal_p95_s",
    "steady_cpu_cores",
    "steady_rss_mib",
)


def test_bench_triggerer_all_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "triggerer.json"
    argv = [
        "bench", "triggerer", "--tasks", str(TASKS), "--steady", "4", "--burst-window", "2",
        "--canaries", "2", "--restart", "--json", str(out), "--plot", str(tmp_path / "t.png"),
    ]  # fmt: skip
    code = main(argv)
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    body = json.loads(out.read_text())
    assert body["command"] == "kpo-finalizer " + " ".join(argv)
    assert body["machine"]["cpus"] >= 1
    by = {v["variant"]: v for v in body["variants"]}
    assert list(by) == ["baseline", "classic", "finalizing"]
    for variant in by.values():
        missing = [key for key in REQUIRED if key not in variant]
        assert not missing, (variant["variant"], missing)
        assert variant["tasks"] == TASKS
        assert variant["startup_triggers_running"] == TASKS + 1  # and the loop-lag probe
        assert variant["startup_all_running_s"] > 0
        assert variant["steady_cpu_cores"] > 0
        assert variant["steady_rss_mib"] > 50  # two Python processes with Airflow imported
        assert variant["loop_lag"]["steady"]["samples"] > 10  # the probe reports ten a second
        assert variant["heartbeat_age_max_s"] is not None
        assert variant["canaries_fired"] == 2
        assert variant["restart_all_running_s"] > 0

    fin = by["finalizing"]
    assert fin["terminal_correct"] == TASKS
    assert fin["xcom_correct"] == TASKS
    assert fin["wrong_state"] == 0
    assert fin["pods_left"] == 0
    assert fin["kube_requests_per_pod_per_min"] < 1  # one shared watch, no per-pod polling
    assert fin["restart_terminal_correct"] == TASKS
    assert fin["restart_wrong_state"] == 0
    assert fin["restart_pods_left"] == 0
    assert 0 < fin["end_to_terminal_p95_s"] <= fin["burst_all_terminal_s"]

    classic = by["classic"]
    assert classic["terminal_correct"] == TASKS  # every trigger fired with status success…
    assert classic["xcom_correct"] == 0  # …but the XCom and the pod wait for a worker run
    assert classic["pods_left"] == TASKS
    # It polls each pod (as fast as its saturated loop lets it); the shared watch does not.
    assert classic["kube_requests_per_pod_per_min"] > fin["kube_requests_per_pod_per_min"]
    assert classic["worker_runs_pending"] == TASKS

    baseline = by["baseline"]
    assert baseline["wrong_state"] == 0  # still deferred: its triggers only wait
    assert baseline["burst_all_terminal_s"] is None

    assert "worker run" in printed
    try:
        import matplotlib  # noqa: F401  # the optional `bench` extra
    except ImportError:
        assert "no plot: matplotlib is not installed" in printed
    else:
        assert (tmp_path / "t.png").stat().st_size > 10_000
