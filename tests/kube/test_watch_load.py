"""The watch-load benchmark: its accounting (pure) and one short real run."""

from __future__ import annotations

import pytest

from finalizer.bench import watch_load


def test_summarize_counts_only_the_window() -> None:
    child = {
        "started": 90.0,
        "ready": 91.0,
        "known": 10,
        "window_start": 100.0,
        "window_end": 160.0,
        "cpu_seconds": 0.6,
        "rss_before_kib": 1000,
        "rss_after_kib": 1500,
        "stats": {},
    }
    requests = [
        ("list", 90.5),
        ("watch", 90.6),
        ("watch", 130.0),
        ("patch", 131.0),
        ("patch", 140.0),
        ("get", 161.0),
    ]
    result = watch_load.summarize(10, 60.0, child, requests, watch_timeout_seconds=300)
    assert result["requests_in_window"] == 1  # the churn's patches are not the watcher's
    assert result["pod_updates_in_window"] == 2
    assert result["cpu_us_per_pod_update"] == pytest.approx(0.3e6)
    assert result["requests_per_pod_per_min"] == pytest.approx(0.1)
    assert result["watch_connections_opened"] == 2
    assert result["watch_connections_in_window"] == 1
    assert result["startup_requests"] == {"list": 1, "watch": 1}
    assert result["cpu_seconds_per_pod_per_min"] == pytest.approx(0.06)
    assert result["rss_kib_per_pod"] == 50.0
    assert result["modelled_requests_per_pod_per_min"] == pytest.approx(60 / 375 / 10)
    assert "API requests / pod / min" in watch_load.render(result)


def test_short_real_run() -> None:
    """A child process watches 30 pods on the fake server: one LIST, one WATCH, nothing else."""
    result = watch_load.run(30, 1.0, warmup=0.2, watch_timeout_seconds=300)
    assert result["pods_known"] == 30
    assert result["startup_requests"] == {"list": 1, "watch": 1}
    assert result["watch_connections_opened"] == 1
    assert result["requests_in_window"] == 0
    assert result["cpu_seconds"] >= 0


def test_churn_run_prices_each_update() -> None:
    """Updates to watched and to unwatched (noise) pods reach the child; only the watched are parsed."""
    result = watch_load.run(20, 1.5, warmup=0.2, churn=40.0, noise=20)
    assert result["pod_updates_in_window"] > 10
    assert result["requests_in_window"] == 0
    stats = next(iter(result["watcher_stats"].values()))
    assert stats["events"] >= result["pod_updates_in_window"]
    assert 0 < stats["events_dropped"] < stats["events"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pods"):
        watch_load.run(0, 1.0)
