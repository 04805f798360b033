"""What ``bench triggerer`` watches while a variant runs, sampled from outside the triggerer.

* CPU seconds and RSS of the triggerer's two processes, separately, and of the fake API
  (psutil, which Airflow itself depends on). The supervisor is the ``airflow triggerer`` process;
  the trigger runner is the child it forked whose stdin is a socket (the supervisor channel; the
  log server child has /dev/null there).
* The age of the triggerer's ``latest_heartbeat`` (its Job row) and the task instances of the
  round by state, every ``interval`` seconds, from the metadata DB.
* The runner's loop lag, from the ``LoopLagProbe`` trigger's UDP datagrams (``LagReceiver``).

Samples are cumulative CPU counters with their time, so a window's CPU is the difference of the
samples at its edges (``Sampler.now()`` takes one on demand at a phase boundary).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]  # Airflow's own dependency; no stubs


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # time.time()
    cpu: dict[str, float]  # process role -> cumulative CPU seconds (user + system)
    rss: dict[str, int]  # process role -> bytes
    heartbeat_age: float | None
    states: dict[str, int]  # TI state -> count, for the round's task instances


def _is_runner(proc: psutil.Process) -> bool:
    try:
        return os.readlink(f"/proc/{proc.pid}/fd/0").startswith("socket:")
    except OSError:
        return False


@dataclass
class Target:
    """Whom to sample: a triggerer (supervisor pid, job id) and the round's run ids."""

    supervisor_pid: int
    job_id: int
    run_ids: tuple[str, ...]
    exclude_dag: str
    _procs: dict[str, psutil.Process] = field(default_factory=dict)

    def processes(self) -> dict[str, psutil.Process]:
        if "supervisor" not in self._procs:
            self._procs["supervisor"] = psutil.Process(self.supervisor_pid)
        if "runner" not in self._procs:
            try:
                children = self._procs["supervisor"].children()
            except psutil.Error:
                children = []
            for child in children:
                if _is_runner(child):
                    self._procs["runner"] = child
        return self._procs


class Sampler:
    """A daemon thread taking a ``Sample`` every ``interval`` seconds into ``samples``."""

    def __init__(self, fake_pid: int, interval: float = 0.5) -> None:
        self.fake = psutil.Process(fake_pid)
        self.interval = interval
        self.samples: list[Sample] = []
        self._target: Target | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def watch(self, target: Target | None) -> None:
        """Sample this triggerer from now on (None: only the fake)."""
        with self._lock:
            self._target = target

    def now(self) -> Sample:
        """A sample taken right now (also recorded), for a phase boundary."""
        sample = self._take()
        with self._lock:
            self.samples.append(sample)
        return sample

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sample = self._take()
            except Exception:  # the DB busy or a process gone mid-read: skip this tick
                continue
            with self._lock:
                self.samples.append(sample)

    def _take(self) -> Sample:
        with self._lock:
            target = self._target
        procs: dict[str, psutil.Process] = {"fake": self.fake}
        if target is not None:
            procs.update(target.processes())
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        for role, proc in procs.items():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu[role] = times.user + times.system
                    rss[role] = proc.memory_info().rss
            except psutil.Error:
                continue
        age, states = (None, {}) if target is None else _db_state(target)
        return Sample(time.time(), cpu, rss, age, states)


def _db_state(target: Target) -> tuple[float | None, dict[str, int]]:
    from airflow.jobs.job import Job
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        beat = session.scalar(select(Job.latest_heartbeat).where(Job.id == target.job_id))
        rows = session.execute(
            select(TaskInstance.state, func.count())
            .where(TaskInstance.run_id.in_(target.run_ids), TaskInstance.dag_id != target.exclude_dag)
            .group_by(TaskInstance.state)
        ).all()
    age = None if beat is None else time.time() - beat.timestamp()
    return age, {str(state): int(count) for state, count in rows}


class LagReceiver:
    """Collects the probe's ``(wall time, lag)`` datagrams on an ephemeral 127.0.0.1 UDP port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = int(self.sock.getsockname()[1])
        self.points: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-lag", daemon=True)

    def __enter__(self) -> LagReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(128)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                sent, lag = (float(part) for part in data.split())
            except ValueError:
                continue
            self.points.append((sent, lag))

    def between(self, start: float, end: float) -> list[float]:
        return [lag for t, lag in list(self.points) if start <= t < end]


def cpu_between(first: Sample, last: Sample, role: str) -> float | None:
    """CPU seconds ``role`` used between two samples (None if either misses the process)."""
    if role not in first.cpu or role not in last.cpu:
        return None
    return last.cpu[role] - first.cpu[role]


def in_window(samples: Sequence[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t <= end]


def max_of(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None
