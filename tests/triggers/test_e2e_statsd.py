"""The finalizer's metrics reach StatsD from a real ``airflow triggerer``, as Airflow is configured.

The test binds a UDP socket on 127.0.0.1 and points ``[metrics]`` at it (``statsd_on``, with
InfluxDB-style tags so the labels are visible on the wire); one task finished in the triggerer
must then arrive as ``kpo_finalizer.*`` counters, timers and gauges under Airflow's prefix.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.support.optional import require
from tests.triggers import e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]

PREFIX = "kpo-e2e"


@dataclass(frozen=True)
class Stat:
    """One StatsD line: ``name[,tag=value…]:value|type``."""

    name: str
    tags: dict[str, str]
    value: float
    kind: str

    @classmethod
    def parse(cls, line: str) -> Stat:
        head, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        name, *pairs = head.split(",")
        tags = dict(pair.split("=", 1) for pair in pairs)
        return cls(name, tags, float(value), kind.split("|")[0])


class StatsdListener:
    """A UDP socket on 127.0.0.1 that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statsd-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            with self._lock:
                self.lines.extend(ln for ln in data.decode("utf-8", "replace").splitlines() if ln)

    def stats(self, name: str) -> list[Stat]:
        with self._lock:
            lines = list(self.lines)
        return [s for s in map(Stat.parse, lines) if s.name == f"{PREFIX}.kpo_finalizer.{name}"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def statsd() -> Iterator[StatsdListener]:
    require("statsd")  # the client Airflow's statsd_on uses (the test extra installs it)
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def extra_env(ledger_url: str, statsd: StatsdListener) -> dict[str, str]:
    """The module's triggerer sends Airflow's metrics (and so ours) to the listener."""
    return e2e.finalizer_env(
        ledger_url,
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(statsd.port),
        AIRFLOW__METRICS__STATSD_PREFIX=PREFIX,
        AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED="True",
    )


def _finish_one(
    env: AirflowEnv, kube: FakeKube, kubeconfig: Path, name: str, task_id: str, code: int
) -> None:
    """Defer one task, end its pod with exit ``code`` and wait for the task's end in Airflow's DB."""
    pod = e2e.new_pod(kube, name)
    kube.write_xcom(e2e.NAMESPACE, pod.name, '{"metric": true}')
    ti = env.create_run(e2e.DAG_ID).ti(task_id)
    deferred = time.time()
    e2e.defer_sync(env, ti, e2e.build_trigger(kubeconfig, pod, task_id))
    wait_for(lambda: e2e.followed_since(kube, pod, deferred), 60, 0.05, "the finalizer to watch the pod")
    kube.terminate(e2e.NAMESPACE, pod.name, exit_code=code)
    final = wait_for_ti_state(ti, {"success", "failed", "up_for_retry", "scheduled"}, timeout=90)
    assert final.state == ("success" if code == 0 else "failed"), trigger_logs(env, ti)[-3000:]


def test_metrics_arrive_over_udp_with_their_tags(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    statsd: StatsdListener,
    fake_kube: FakeKube,
    kubeconfig_path: Path,
) -> None:
    _finish_one(env, fake_kube, kubeconfig_path, "statsd-ok", "d", 0)
    _finish_one(env, fake_kube, kubeconfig_path, "statsd-fail", "fail", 1)

    def outcomes() -> set[str] | None:
        seen = {s.tags.get("outcome", "") for s in statsd.stats("finalizations")}
        return seen if {"success", "failed"} <= seen else None

    seen = wait_for(outcomes, 30, 0.1, "finalizations counted for both outcomes")
    assert seen is not None
    counters = statsd.stats("finalizations")
    assert {s.kind for s in counters} == {"c"}
    assert all(s.value == 1 for s in counters)

    steps = statsd.stats("step_seconds")
    assert steps, "no step timing arrived"
    assert {s.kind for s in steps} == {"ms"}
    assert {"read_xcom", "push_xcom", "cleanup"} <= {s.tags.get("step", "") for s in steps}
    assert all(s.value >= 0 for s in steps)

    done = statsd.stats("completion_to_done_seconds")
    assert done, "no completion-to-done timing arrived"
    assert {s.kind for s in done} == {"ms"}

    in_flight = statsd.stats("in_flight")
    assert in_flight, "no in_flight gauge arrived"
    assert {s.kind for s in in_flight} == {"g"}
    assert in_flight[-1].value == 0
