"""One variant of ``bench triggerer``, phase by phase, against one real ``airflow triggerer``.

1. start-up: the N tasks (and the loop-lag probe) are deferred before the triggerer starts; the
   phase ends when every one of them has logged ``trigger … starting`` in the runner;
2. steady state: M canaries are deferred (due during the burst), then S seconds with every pod
   Running: CPU, RSS and Kubernetes API requests are measured over exactly that window;
3. burst: every base container ends within W seconds, each after writing a B-byte ``return.json``;
4. drain: until every task is terminal (finalizing) or every trigger has fired (classic); baseline
   only waits for its canaries;
5. restart (optional): N more tasks deferred to the running triggerer; SIGTERM it, start a new one
   and end the pods at once; until every task is terminal / fired again.

The timestamps of every boundary go into ``marks``; the figures are computed from them later
(``triggerer_figures``), together with the samples and lag points the world collected.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from finalizer.bench import triggerer_rounds as rounds
from finalizer.bench.triggerer_logs import Blocked, blocked_warnings, started_at, trigger_log_files
from finalizer.bench.triggerer_sampler import Sample, Target
from finalizer.bench.triggerer_setup import World, namespace
from finalizer.bench.triggerer_world import (
    CANARY_DAG_ID,
    PROBE_TASK_ID,
    canary_triggers,
    defer_all,
    probe_trigger,
)


@dataclass(frozen=True, slots=True)
class Settings:
    tasks: int
    shape: str
    xcom_bytes: int
    canaries: int
    steady: float
    burst_window: float
    restart: bool
    startup_timeout: float
    drain_timeout: float


@dataclass
class VariantRaw:
    """Everything measured for one variant, before it is turned into figures."""

    variant: str
    marks: dict[str, float] = field(default_factory=dict)
    started: int = 0  # variant triggers running at the end of start-up
    restart_started: int = 0
    steady: tuple[Sample, Sample] | None = None
    requests: dict[str, int] = field(default_factory=dict)
    canaries: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    main: rounds.Round | None = None
    second: rounds.Round | None = None
    blocked: list[Blocked] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class VariantRun:
    def __init__(self, world: World, variant: str, settings: Settings, say: Any = print) -> None:
        self.world, self.variant, self.s, self.say = world, variant, settings, say
        self.raw = VariantRaw(variant)
        self.logs_dir = world.env.home / "logs"
        self.canary_run = world.env.create_run(CANARY_DAG_ID, f"bench_{variant}_canary")
        self._triggerers: list[Any] = []

    def execute(self) -> VariantRaw:
        s, raw = self.s, self.raw
        try:
            self.say(f"[{self.variant}] deferring {s.tasks} tasks ({s.shape}) like a worker…")
            raw.main = rounds.prepare(self.world, self.variant, s.shape, s.tasks, f"bench_{self.variant}_r1")
            self._defer_canary_tis([(self.canary_run.ti(PROBE_TASK_ID), probe_trigger(self.world.lag.port))])
            triggerer = self._start_triggerer("start", "r1")
            raw.started = self._wait_started(triggerer, s.tasks + 1, "running")
            self.say(f"[{self.variant}] {raw.started} triggers running; steady state for {s.steady:g} s…")
            self._steady(triggerer)
            self._burst_and_drain(triggerer, raw.main, "burst_start", "drained")
            if s.restart:
                self._restart(triggerer)
        finally:
            for triggerer in self._triggerers:
                triggerer.stop(timeout=90)
                raw.blocked.extend(blocked_warnings(triggerer.logs()))
            self.world.sampler.watch(None)
            raw.marks["end"] = time.time()
        for rnd in (raw.main, raw.second):
            if rnd is not None:
                rounds.collect(self.world, rnd, s.xcom_bytes)
        return raw

    # -- phases -----------------------------------------------------------------------------------

    def _start_triggerer(self, mark: str, run: str) -> Any:
        from finalizer.testing.triggerer_process import TriggererProcess

        env = {
            "AIRFLOW__TRIGGERER__CAPACITY": str(2 * self.s.tasks + self.s.canaries + 10),
            "AIRFLOW__KPO_FINALIZER__STATE_DIR": str(self.world.home / f"kpo-finalizer-{self.variant}"),
        }
        name = f"triggerer-{self.variant}-{len(self._triggerers) + 1}"
        triggerer = TriggererProcess(
            self.world.env,
            extra_env=env,
            log_path=self.world.home / f"{name}.log",
            name=name,
            startup_timeout=180,
        )
        self.raw.marks[mark] = time.time()
        job_id = triggerer.start()
        self.raw.marks[f"{mark}_up"] = time.time()  # its Job row heartbeats from here on
        self._triggerers.append(triggerer)
        self.world.sampler.watch(
            Target(int(triggerer.pid or 0), job_id, (f"bench_{self.variant}_{run}",), CANARY_DAG_ID)
        )
        return triggerer

    def _wait_started(self, triggerer: Any, count: int, mark: str) -> int:
        """Until ``count`` triggers run in this triggerer's runner; mark when the last one started."""
        done = rounds.wait(
            lambda: len(trigger_log_files(self.logs_dir, triggerer.job_id)) >= count,
            self.s.startup_timeout,
            triggerer.is_running,
        )
        files = trigger_log_files(self.logs_dir, triggerer.job_id)
        times = [t for t in (started_at(p) for p in files) if t is not None]
        if done is None:
            self.raw.notes.append(f"{mark}: only {len(files)} of {count} triggers started in time")
        else:
            self.raw.marks[mark] = max([*times, 0.0]) or done
        return len(files)

    def _steady(self, triggerer: Any) -> None:
        s = self.s
        burst_at = time.time() + 5 + s.steady  # canaries deferred below, then the window
        span = s.burst_window + 10
        dues = [burst_at + (k + 0.5) * span / s.canaries for k in range(s.canaries)]
        canary_tis = [self.canary_run.ti(f"canary_{k:03d}") for k in range(s.canaries)]
        self._defer_canary_tis(list(zip(canary_tis, canary_triggers(dues), strict=True)))
        self.raw.canaries = [(due, None, None) for due in dues]
        self.raw.marks["steady_start"] = time.time()
        first = self.world.sampler.now()
        time.sleep(max(0.0, burst_at - time.time()))  # the measured window itself, not a sync
        last = self.world.sampler.now()
        self.raw.marks["steady_end"] = last.t
        self.raw.steady = (first, last)
        self.raw.requests = self.world.fake.call("requests", namespace(self.variant), first.t, last.t)

    def _burst_and_drain(self, triggerer: Any, rnd: rounds.Round, start: str, end: str) -> None:
        s, ns = self.s, namespace(self.variant)
        self.raw.marks[start] = time.time()
        if self.variant == "baseline":  # nothing to end: wait for the canaries only
            rounds.wait(self._canaries_fired, s.burst_window + 30, triggerer.is_running)
            self.raw.marks[end] = time.time()
        else:
            self.say(
                f"[{self.variant}] burst: {len(rnd.names)} base containers end within {s.burst_window:g} s…"
            )
            self.world.fake.call("burst", ns, rnd.names, s.burst_window, s.xcom_bytes)
            done = rounds.is_done(self.variant, s.tasks)
            rnd.done_at = rounds.wait(
                lambda: done(rounds.states(rnd.run_id)), s.drain_timeout, triggerer.is_running
            )
            self.raw.marks[end] = rnd.done_at or time.time()
            rnd.ended = self.world.fake.call("burst_ended", ns)[1]
        rounds.wait(self._canaries_fired, 30, triggerer.is_running)
        self._read_canaries()

    def _restart(self, old: Any) -> None:
        s, raw = self.s, self.raw
        second = None  # baseline: its N tasks are still deferred; the new triggerer takes them over
        if self.variant != "baseline":
            self.say(f"[{self.variant}] restart: deferring {s.tasks} more tasks to the running triggerer…")
            second = rounds.prepare(self.world, self.variant, s.shape, s.tasks, f"bench_{self.variant}_r2")
            self._wait_started(old, 2 * s.tasks + 1 + s.canaries, "r2_running")
            raw.second = second
        self.say(f"[{self.variant}] restart: SIGTERM the triggerer, start a new one, end the pods…")
        stopper = threading.Thread(target=old.stop, kwargs={"timeout": 90}, daemon=True)
        raw.marks["restart_start"] = time.time()
        stopper.start()
        if second is not None:
            self.world.fake.call("burst", namespace(self.variant), second.names, s.burst_window, s.xcom_bytes)
        new = self._start_triggerer("restart_process_start", "r2" if second else "r1")
        raw.restart_started = self._wait_started(new, s.tasks + 1, "restart_running")
        if second is not None:
            done = rounds.is_done(self.variant, s.tasks)
            second.done_at = rounds.wait(
                lambda: done(rounds.states(second.run_id)), s.drain_timeout, new.is_running
            )
            second.ended = self.world.fake.call("burst_ended", namespace(self.variant))[1]
            second.ended = {n: t for n, t in second.ended.items() if n in set(second.names)}
        raw.marks["restart_done"] = (second.done_at if second else None) or time.time()
        stopper.join(120)

    # -- canaries --------------------------------------------------------------------------------

    def _defer_canary_tis(self, pairs: list[tuple[Any, Any]]) -> None:
        asyncio.run(defer_all(self.world.env, pairs))

    def _canaries_fired(self) -> bool:
        """No canary deferred any more (the probe, also in the canary DAG, never fires)."""
        return rounds.canary_events(self.canary_run.run_id).count(None) <= 1

    def _read_canaries(self) -> None:
        """(due, woke, event written) per canary, from its TI's trigger event and scheduled_dttm."""
        by_due = {e[0]: e for e in rounds.canary_events(self.canary_run.run_id) if e is not None}
        self.raw.canaries = [by_due.get(due, (due, None, None)) for due, _, _ in self.raw.canaries]
