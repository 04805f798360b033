"""The bench commands run end to end at a tiny size and write the figures they print."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from finalizer.cli import main
from finalizer.testing import FakeKube
from tests.support.polling import eventually_blocking

pytestmark = pytest.mark.slow


def test_bench_finalize_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "finalize.json"
    code = main(["bench", "finalize", "--pods", "8", "--concurrency", "4", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["command"].startswith("kpo-finalizer")
    assert result["machine"]["cpus"] >= 1
    assert result["pods"] == 8
    assert result["succeeded"] == 8
    assert result["xcoms_correct"] == 8
    assert 0 <= result["noticed_p50_s"] <= result["noticed_p95_s"] <= result["latency_max_s"]
    assert result["cpu_ms_per_job_ours"] > 0
    assert result["cpu_ms_per_job_fake"] > 0
    assert result["one_core_per_s"] == pytest.approx(1000 / result["cpu_ms_per_job_ours"], rel=0.01)
    assert "throughput_per_s" in capsys.readouterr().out
    assert result["event_loop"] == "uvloop"  # auto, with uvloop installed (a main dependency)
    code = main(["bench", "finalize", "--pods", "4", "--event-loop", "asyncio", "--json", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["event_loop"] == "asyncio"


def test_bench_finalize_module_runs_several_concurrencies(tmp_path: Path) -> None:
    from finalizer.bench import finalize

    out = tmp_path / "runs.json"
    assert finalize.main(["--pods", "4", "--concurrency", "1", "2", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["command"] == f"python -m finalizer.bench.finalize --pods 4 --concurrency 1 2 --json {out}"
    assert [r["concurrency"] for r in written["runs"]] == [1, 2]
    assert all(r["xcoms_correct"] == 4 and r["pods_left"] == 0 for r in written["runs"])


@pytest.mark.airflow
def test_bench_api_load_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    code = main(["bench", "api-load", "--pods", "3", "--duration", "4", "--json", str(out)])
    assert code == 0
    sides = json.loads(out.read_text())["sides"]
    upstream, ours = sides["upstream"], sides["ours"]
    # Upstream polls every pod every 2 s: about 2 GETs per pod in a 4 s window.
    assert upstream["requests_by_verb"].get("get", 0) >= 3
    assert upstream["trigger_events"]["by_status"] == {}
    # Ours: one LIST and one WATCH for all pods, nothing per pod in steady state.
    assert ours["requests_whole_run_by_verb"] == {"list": 1, "watch": 1}
    assert ours["requests"] == 0
    assert upstream["cpu_seconds"] > ours["cpu_seconds"]


class _CountedReads:
    """The fake as the e2e bench's sampler reads it, counted: a second read means a whole sample
    was taken (and looked at) before it."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube
        self._reads = 0
        self.second = threading.Event()

    def list_pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self._reads += 1
        if self._reads == 2:
            self.second.set()
        return self._kube.list_pods(namespace)


def test_e2e_pod_sampler_sees_base_end_and_deletion() -> None:
    """The e2e bench's clock: base-container end and pod disappearance, keyed by the KPO labels."""
    from finalizer.bench.e2e import NAMESPACE, PodSampler

    with FakeKube.in_thread() as kube:
        labels = {"dag_id": "d", "task_id": "t"}
        kube.create_pod(NAMESPACE, name="p", labels=labels)
        kube.start(NAMESPACE, "p")
        reads = _CountedReads(kube)
        with PodSampler(reads, interval=0.02) as sampler:
            assert reads.second.wait(10), "the sampler never read the pods twice"
            assert sampler.base_end == {}  # a whole sample of the running pod saw no end
            ended = time.time()
            kube.terminate(NAMESPACE, "p", "base", 0)
            eventually_blocking(lambda: ("d", "t") in sampler.base_end, what="the base end sampled")
            kube.force_delete(NAMESPACE, "p")
            eventually_blocking(lambda: ("d", "t") in sampler.gone, what="the pod's disappearance sampled")
        # Stamped by the sample that first showed it (every 0.02 s); 250x margin for a loaded machine.
        assert 0 <= sampler.base_end[("d", "t")] - ended < 5.0
        assert sampler.gone[("d", "t")] >= sampler.base_end[("d", "t")]


@pytest.mark.airflow
def test_e2e_dag_file_parses(tmp_path: Path) -> None:
    """The bench's DAG file: both variants in both scenarios, plus the fillers, all import cleanly."""
    from finalizer.bench.e2e import DAG_SOURCE
    from tests.cli.test_examples import parse_dags

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "bench_e2e.py").write_text(DAG_SOURCE)
    result = parse_dags(dags, tmp_path, {"KPO_BENCH_TASKS": "2", "KPO_BENCH_KUBECONFIG": "/nonexistent"})
    assert result["errors"] == {}
    assert result["dags"] == {
        **{
            f"bench_{v}_{s}": ["pod_000", "pod_001"]
            for v in ("classic", "finalizing")
            for s in ("idle", "contention", "paused")
        },
        "bench_fillers": ["filler_000", "filler_001"],
    }
