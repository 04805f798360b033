"""Finalizer metrics: a tiny in-process registry, Prometheus text on demand, Airflow ``Stats`` as a sink.

Why our own: no new dependency, and the numbers must exist even where no StatsD/OTel backend is
configured (the bench and ``kpo-finalizer`` health output read them). Each update is also sent
to Airflow's ``Stats`` (``airflow.sdk.observability.stats``) when Airflow is importable — looked
up lazily on first use, so importing this module never imports Airflow. Names go to ``Stats`` as
``kpo_finalizer.<name>`` with the labels as tags; Prometheus names are ``kpo_finalizer_<name>``.

Thread-safe: the finalizer updates from its own thread; a health endpoint may render from another.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib
import importlib.util
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "kpo_finalizer"
#: Latency buckets in seconds: from a fast ledger write to a slow Execution API under load.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600,
)  # fmt: skip

LabelValues = tuple[str, ...]


class StatsSink:
    """Forwards updates to Airflow's ``Stats``; inactive when Airflow is absent or fails.

    ``mode``: ``"auto"`` uses Airflow's ``Stats`` only if Airflow is already imported when the
    first metric is emitted (always true inside ``airflow triggerer``): importing it from scratch
    takes seconds, a stall no event loop should take for metrics. ``"on"`` imports it anyway;
    ``"off"`` never does. A ``module`` given explicitly is used as is.
    """

    def __init__(self, module: ModuleType | None = None, *, mode: str = "auto") -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"StatsSink mode must be auto, on or off, got {mode!r}")
        self._module = module
        self._mode = mode
        self._resolved = module is not None or mode == "off"
        self._lock = threading.Lock()

    def _stats(self) -> ModuleType | None:
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    if self._mode == "on" or "airflow" in sys.modules:
                        self._module = _import_airflow_stats()
                    self._resolved = True
        return self._module

    @property
    def active(self) -> bool:
        return self._stats() is not None

    def emit(self, kind: str, name: str, value: float, tags: Mapping[str, str]) -> None:
        stats = self._stats()
        if stats is None:
            return
        stat = f"{PREFIX}.{name}"
        try:
            if kind == "counter":
                stats.incr(stat, int(value), tags=dict(tags))
            elif kind == "gauge":
                stats.gauge(stat, value, tags=dict(tags))
            else:
                stats.timing(stat, value * 1000.0, tags=dict(tags))  # Stats timings are milliseconds
        except Exception:  # a metrics backend must never break finalization
            log.debug("Airflow Stats emission of %s failed", stat, exc_info=True)


def _import_airflow_stats() -> ModuleType | None:
    try:
        if importlib.util.find_spec("airflow") is None:
            return None
        return importlib.import_module("airflow.sdk.observability.stats")
    except Exception:
        log.debug("Airflow Stats unavailable; metrics stay in-process", exc_info=True)
        return None


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str], sink: StatsSink) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._sink = sink
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, object]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def _tags(self, key: LabelValues) -> dict[str, str]:
        return dict(zip(self.labelnames, key, strict=True))

    def samples(self) -> list[tuple[str, LabelValues, float]]:
        """(name suffix, label values, value) for the text exposition."""
        raise NotImplementedError


class _Scalar(_Metric):
    """One float per label set (counters and gauges)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[LabelValues, float] = {}

    def _add(self, key: LabelValues, amount: float) -> float:
        with self._lock:
            value = self._values[key] = self._values.get(key, 0.0) + amount
        return value

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[tuple[str, LabelValues, float]]:
        with self._lock:
            return [("", k, v) for k, v in sorted(self._values.items())]


class Counter(_Scalar):
    """Monotonic count per label set."""

    kind = "counter"

    def inc(self, amount: float = 1, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease")
        key = self._key(labels)
        self._add(key, amount)
        self._sink.emit("counter", self.name, amount, self._tags(key))


class Gauge(_Scalar):
    """A value that goes up and down (in flight, queue depth)."""

    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)
        self._sink.emit("gauge", self.name, float(value), self._tags(key))

    def inc(self, amount: float = 1, **labels: object) -> None:
        key = self._key(labels)
        self._sink.emit("gauge", self.name, self._add(key, amount), self._tags(key))

    def dec(self, amount: float = 1, **labels: object) -> None:
        self.inc(-amount, **labels)


class Histogram(_Metric):
    """Observations in fixed buckets (upper bounds, inclusive), plus sum and count."""

    kind = "histogram"

    def __init__(self, *args: Any, buckets: Iterable[float] = LATENCY_BUCKETS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {self.name} needs distinct finite buckets")
        self.buckets = tuple(bounds)
        # per label set: counts per bucket (+1 for +Inf), sum
        self._data: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts, total = self._data.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[index] += 1
            total[0] += value
        self._sink.emit("histogram", self.name, value, self._tags(key))

    def count(self, **labels: object) -> int:
        with self._lock:
            data = self._data.get(self._key(labels))
            return sum(data[0]) if data else 0

    def total(self, **labels: object) -> float:
        with self._lock:
            data = self._data.get(self._key(labels))
            return data[1][0] if data else 0.0

    def samples(self) -> list[tuple[str, LabelValues, float]]:
        out: list[tuple[str, LabelValues, float]] = []
        with self._lock:
            for key, (counts, total) in sorted(self._data.items()):
                running = 0
                for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                    running += count
                    out.append(("_bucket", (*key, _fmt(bound)), float(running)))
                out.append(("_sum", key, total[0]))
                out.append(("_count", key, float(running)))
        return out


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if value != int(value) else f"{int(value)}.0"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Registry:
    """Holds metrics by name; ``render()`` gives the Prometheus text exposition format (0.0.4)."""

    def __init__(self, sink: StatsSink | None = None) -> None:
        self.sink = sink if sink is not None else StatsSink()
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _add(self, factory: Callable[[], _Metric], name: str) -> Any:
        with self._lock:
            if name in self._metrics:
                raise ValueError(f"metric {name} is already registered")
            metric = self._metrics[name] = factory()
            return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(lambda: Counter(name, help, labelnames, self.sink), name)  # type: ignore[no-any-return]

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._add(lambda: Gauge(name, help, labelnames, self.sink), name)  # type: ignore[no-any-return]

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Iterable[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return self._add(lambda: Histogram(name, help, labelnames, self.sink, buckets=buckets), name)  # type: ignore[no-any-return]

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            metrics = list(self._metrics.values())
        for metric in metrics:
            full = f"{PREFIX}_{metric.name}" + ("_total" if metric.kind == "counter" else "")
            help_text = metric.help.replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {metric.kind}")
            names = metric.labelnames + (("le",) if metric.kind == "histogram" else ())
            for suffix, key, value in metric.samples():
                pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names[: len(key)], key, strict=True)]
                labels = "{" + ",".join(pairs) + "}" if pairs else ""
                lines.append(f"{full}{suffix}{labels} {_fmt(value)}")
        return "\n".join(lines) + "\n"


class FinalizerMetrics:
    """The finalizer's metrics, typed. One per process (``METRICS``); tests make their own."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        r = self.registry
        self.finalizations = r.counter("finalizations", "Finished finalization jobs by outcome.", ["outcome"])
        self.step_seconds = r.histogram("step_seconds", "Time spent in each pipeline step.", ["step"])
        self.completion_to_done_seconds = r.histogram(
            "completion_to_done_seconds", "From the base container's end (kubelet time) to job done."
        )
        self.in_flight = r.gauge("in_flight", "Jobs actively finalizing.")
        self.queue_depth = r.gauge("queue_depth", "Jobs whose pod completed, waiting for a concurrency slot.")
        self.retries = r.counter("retries", "Retried I/O calls by step.", ["step"])
        self.errors = r.counter("errors", "Errors by step and error class.", ["step", "error"])
        self.available = r.gauge(
            "available", "1 while the triggerer's finalizer runs, 0 while it is down (tasks go classic)."
        )
        self.restarts = r.counter("restarts", "Finalizer restarts after it went down (ledger outage, crash).")
        self.handovers = r.counter(
            "handovers",
            "Tasks handed to the worker path, by whether the ledger recorded it at once.",
            ["recorded"],
        )
        self.config_problems = r.counter(
            "config_problems", "Bad [kpo_finalizer] options at start.", ["option"]
        )
        self.log_bytes_unshown = r.counter(
            "log_bytes_unshown", "Container log bytes not written to a task log that did not keep up."
        )

    def finalized(self, outcome: str) -> None:
        self.finalizations.inc(outcome=outcome)

    def step_done(self, step: str, seconds: float) -> None:
        self.step_seconds.observe(seconds, step=step)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """``with METRICS.timed("push_xcom"): …`` records the block's duration (also on error)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.step_done(step, time.perf_counter() - started)

    def completed_to_done(self, finished_at: datetime | None, now: datetime | None = None) -> None:
        """Record base-container end (kubelet time) → now; ignored when the end time is unknown."""
        if finished_at is None:
            return
        now = now or datetime.now(UTC)
        self.completion_to_done_seconds.observe(max(0.0, (now - finished_at).total_seconds()))

    def retried(self, step: str) -> None:
        self.retries.inc(step=step)

    def error(self, step: str, exc: BaseException) -> None:
        self.errors.inc(step=step, error=type(exc).__name__)

    def render(self) -> str:
        """Prometheus text exposition of every metric."""
        return self.registry.render()


#: The process-wide metrics.
METRICS = FinalizerMetrics()
