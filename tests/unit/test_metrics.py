"""finalizer.metrics: counters/gauges/histograms, Prometheus text (parsed by prometheus_client),
and emission through Airflow's real Stats functions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from finalizer.metrics import FinalizerMetrics, Registry, StatsSink
from tests.support.optional import require


def registry() -> Registry:
    return Registry(StatsSink(mode="off"))


def test_counter_gauge_histogram_values() -> None:
    m = FinalizerMetrics(registry())
    m.finalized("success")
    m.finalized("success")
    m.finalized("failed")
    m.in_flight.inc()
    m.in_flight.inc()
    m.in_flight.dec()
    m.queue_depth.set(17)
    for seconds in (0.003, 0.2, 0.2, 7.0, 10_000.0):
        m.step_done("push_xcom", seconds)
    m.error("cleanup", TimeoutError())
    assert m.finalizations.value(outcome="success") == 2
    assert m.finalizations.value(outcome="skipped") == 0
    assert m.in_flight.value() == 1
    assert m.queue_depth.value() == 17
    assert m.step_seconds.count(step="push_xcom") == 5
    assert m.step_seconds.total(step="push_xcom") == pytest.approx(10_007.403)
    assert m.errors.value(step="cleanup", error="TimeoutError") == 1


def test_misuse_is_rejected() -> None:
    r = registry()
    c = r.counter("c", "help", ["step"])
    with pytest.raises(ValueError, match="takes labels"):
        c.inc(outcome="x")
    with pytest.raises(ValueError, match="cannot decrease"):
        c.inc(-1, step="a")
    with pytest.raises(ValueError, match="already registered"):
        r.gauge("c", "again")
    with pytest.raises(ValueError, match="distinct finite buckets"):
        r.histogram("h", "help", buckets=[1, 1])
    with pytest.raises(ValueError, match="auto, on or off"):
        StatsSink(mode="sometimes")


def test_prometheus_text_parses_and_matches() -> None:
    parser = require("prometheus_client.parser")
    m = FinalizerMetrics(registry())
    m.finalized("success")
    m.finalized('we"ird\\label\nvalue')
    m.queue_depth.set(3)
    m.retried("read_xcom")
    for seconds in (0.004, 0.004, 0.3, 5000.0):
        m.completion_to_done_seconds.observe(seconds)
    text = m.render()
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    fin = families["kpo_finalizer_finalizations"]
    assert fin.type == "counter"
    by_outcome = {s.labels["outcome"]: s.value for s in fin.samples if s.name.endswith("_total")}
    assert by_outcome == {"success": 1.0, 'we"ird\\label\nvalue': 1.0}
    assert families["kpo_finalizer_queue_depth"].samples[0].value == 3.0
    hist = families["kpo_finalizer_completion_to_done_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets["0.001"] == 0
    assert buckets["0.005"] == 2
    assert buckets["0.5"] == 3
    assert buckets["3600.0"] == 3
    assert buckets["+Inf"] == 4
    values = list(buckets.values())
    assert values == sorted(values)  # cumulative
    count = [s.value for s in hist.samples if s.name.endswith("_count")]
    total = [s.value for s in hist.samples if s.name.endswith("_sum")]
    assert count == [4.0]
    assert total == [pytest.approx(5000.308)]
    assert "# TYPE kpo_finalizer_retries_total counter" in text


def test_bucket_bounds_are_inclusive() -> None:
    r = registry()
    h = r.histogram("h", "help", buckets=[1.0, 2.0])
    for value in (1.0, 2.0, 2.5):
        h.observe(value)
    text = r.render()
    assert 'kpo_finalizer_h_bucket{le="1.0"} 1.0' in text
    assert 'kpo_finalizer_h_bucket{le="2.0"} 2.0' in text
    assert 'kpo_finalizer_h_bucket{le="+Inf"} 3.0' in text


def test_concurrent_updates_are_not_lost() -> None:
    m = FinalizerMetrics(registry())

    def work() -> None:
        for _ in range(2000):
            m.finalized("success")
            m.step_done("read_pod", 0.01)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.finalizations.value(outcome="success") == 8000
    assert m.step_seconds.count(step="read_pod") == 8000


class RecordingStatsdClient:
    """Stands in for the ``statsd`` package (not installed), below Airflow's real StatsD logger."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1) -> None:
        self.calls.append(("incr", stat, count))

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False) -> None:
        self.calls.append(("gauge", stat, value))

    def timing(self, stat: str, dt: Any) -> None:
        self.calls.append(("timing", stat, dt))


@pytest.fixture
def airflow_stats() -> Iterator[tuple[ModuleType, RecordingStatsdClient]]:
    """Airflow's real Stats module, wired to a SafeStatsdLogger over a recording client."""
    stats = require("airflow.sdk.observability.stats")
    from airflow.sdk._shared.observability.metrics import stats as impl
    from airflow.sdk._shared.observability.metrics.statsd_logger import SafeStatsdLogger

    client = RecordingStatsdClient()
    saved = (impl._factory, impl._backend, impl._export_legacy_names)
    stats.initialize(factory=lambda: SafeStatsdLogger(client), export_legacy_names=False)
    try:
        yield stats, client
    finally:
        impl._factory, impl._backend, impl._export_legacy_names = saved


def test_updates_flow_through_airflow_stats(airflow_stats: tuple[ModuleType, RecordingStatsdClient]) -> None:
    stats, client = airflow_stats
    m = FinalizerMetrics(Registry(StatsSink(stats)))
    m.finalized("success")
    m.queue_depth.set(5)
    m.step_done("cleanup", 0.25)
    assert ("incr", "kpo_finalizer.finalizations", 1) in client.calls
    assert ("gauge", "kpo_finalizer.queue_depth", 5.0) in client.calls
    assert ("timing", "kpo_finalizer.step_seconds", 250.0) in client.calls


def test_auto_mode_uses_airflow_only_when_already_imported(
    airflow_stats: tuple[ModuleType, RecordingStatsdClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = airflow_stats  # airflow is imported now, as inside the triggerer
    assert StatsSink(mode="auto").active
    m = FinalizerMetrics(Registry(StatsSink(mode="auto")))
    m.retried("push_xcom")
    assert ("incr", "kpo_finalizer.retries", 1) in client.calls
    assert not StatsSink(mode="off").active


def test_a_failing_backend_never_breaks_finalization() -> None:
    broken = ModuleType("broken_stats")

    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("statsd down")

    broken.incr = explode  # type: ignore[attr-defined]
    m = FinalizerMetrics(Registry(StatsSink(broken)))
    m.finalized("success")
    assert m.finalizations.value(outcome="success") == 1


def test_timed_block_and_completion_latency() -> None:
    m = FinalizerMetrics(registry())
    with m.timed("cleanup"):
        pass
    with pytest.raises(RuntimeError), m.timed("cleanup"):
        raise RuntimeError("boom")
    assert m.step_seconds.count(step="cleanup") == 2
    assert 0 <= m.step_seconds.total(step="cleanup") < 1
    end = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
    m.completed_to_done(end, now=end + timedelta(seconds=2.5))
    m.completed_to_done(None)  # unknown end time: nothing recorded
    m.completed_to_done(end, now=end - timedelta(seconds=1))  # clock skew: clamped to 0
    assert m.completion_to_done_seconds.count() == 2
    assert m.completion_to_done_seconds.total() == 2.5
