"""A 10 MiB container log through a real `airflow triggerer` (SQLite): every line reaches the task
log, and what it costs the triggerer's two processes (the runner writes each line as one record;
the supervisor routes it to the task's log file).

Figures (README): ``pytest tests/triggers/test_e2e_logs_large.py -s``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped]  # Airflow's own dependency; no stubs
import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.airflow, pytest.mark.anyio]

LINE = "2026-12-02 10:00:00,000 INFO worker: processed record {i:08d} " + "x" * 40  # ~100 bytes
COUNT = 10 * 1024 * 1024 // (len(LINE.format(i=0)) + 1)


def runner_of(supervisor: psutil.Process) -> psutil.Process:
    """The trigger runner: the supervisor's child whose stdin is the socket to it."""
    for child in supervisor.children():
        try:
            if os.readlink(f"/proc/{child.pid}/fd/0").startswith("socket:"):
                return child
        except OSError:
            continue
    raise AssertionError("no trigger runner process")


class PeakRss:
    """The largest RSS of a process, sampled every 50 ms in a thread (there is no event for it)."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return int(self.peak)


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def test_a_10_mib_log_through_a_real_triggerer(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, kubeconfig_path: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "logs-large")
    fake_kube.write_xcom(pod.namespace, pod.name, '{"ok": true}')
    fake_kube.set_logs(pod.namespace, pod.name, "base", [LINE.format(i=i) for i in range(COUNT)])
    ti = env.create_run(e2e.DAG_ID).ti("a")
    deferred = time.time()
    await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig_path, pod, "a"))
    wait_for(lambda: e2e.followed_since(fake_kube, pod, deferred), 60, what="the finalizer to watch the pod")
    assert triggerer.pid is not None
    supervisor = psutil.Process(triggerer.pid)
    runner = runner_of(supervisor)
    idle = cpu(supervisor)
    await anyio.sleep(10)  # the supervisor's own idle cost (heartbeats, DB sync) over a known span
    idle_rate = (cpu(supervisor) - idle) / 10
    log_mark = len(triggerer.logs())
    before = {"runner": cpu(runner), "supervisor": cpu(supervisor)}
    rss_before = runner.memory_info().rss
    peak = PeakRss(runner)
    started = time.monotonic()
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, {"success", "failed", "up_for_retry", "scheduled"}, timeout=600)
    took = time.monotonic() - started
    peak_rss = peak.stop()
    spent = {"runner": cpu(runner) - before["runner"], "supervisor": cpu(supervisor) - before["supervisor"]}
    text = trigger_logs(env, ti)
    assert final.state == "success", text[-3000:]
    assert text.count("[base] logs: ") == COUNT, "every line in the task log"
    assert f"[base] logs: {LINE.format(i=COUNT - 1)}" in text
    blocked = [
        float(line.split("blocked for ")[1].split(" ")[0])
        for line in triggerer.logs()[log_mark:].splitlines()
        if "async thread was blocked for " in line
    ]
    print(
        f"\n[kpo-finalizer log cost, real triggerer] {COUNT} lines (10 MiB): pod end -> success "
        f"{took:.1f}s; CPU runner {spent['runner']:.1f}s, supervisor {spent['supervisor']:.1f}s "
        f"(idle rate {idle_rate:.2f} CPU-s/s); runner RSS +{(peak_rss - rss_before) / 2**20:.1f} MiB "
        f"at peak; runner loop blocked > 0.2 s: {len(blocked)} times, longest {max(blocked, default=0):.2f}s"
    )
