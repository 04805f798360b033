"""The real ``airflow triggerer`` processes of a ``bench chaos`` campaign: start, SIGKILL, restart.

A triggerer that exits on its own (the finalizer's "crash, don't hang", or Airflow giving up on
its metadata DB) is started again by ``keep_alive``, as a process supervisor or a Kubernetes
Deployment would; each such restart is counted and its log tail kept for the report.
"""

from __future__ import annotations

import time
from typing import Any

from finalizer.bench.chaos_world import World


class Triggerers:
    def __init__(self, world: World, say: Any = print) -> None:
        self.world, self.say = world, say
        self.live: list[Any] = []  # TriggererProcess
        self.started = 0
        self.restarts = 0
        self.exits: list[str] = []  # why a triggerer exited by itself: its return code and log tail

    def start(self, capacity: int = 500) -> Any:
        from finalizer.testing.triggerer_process import TriggererProcess

        self.started += 1
        name = f"triggerer-{self.started:03d}"
        proc = TriggererProcess(
            self.world.env,
            extra_env=self.world.triggerer_env(capacity),
            log_path=self.world.home / f"{name}.log",
            name=name,
            startup_timeout=180,
        )
        proc.start()
        self.live.append(proc)
        return proc

    def ensure(self) -> Any:
        """A running triggerer (the newest), started if there is none."""
        self.keep_alive()
        return self.live[-1] if self.live else self.start()

    def kill(self, proc: Any) -> float:
        """SIGKILL the process group; the time it happened."""
        proc.kill()
        at = time.time()
        self.live.remove(proc)
        return at

    def keep_alive(self) -> None:
        """Start a new triggerer for each one that exited by itself."""
        for proc in [p for p in self.live if not p.is_running()]:
            self.live.remove(proc)
            code = proc.stop()
            tail = proc.logs()[-1500:]
            self.exits.append(f"{proc.name} exited with {code}; log tail:\n{tail}")
            self.say(f"{proc.name} exited by itself (code {code}); starting another")
            self.restarts += 1
            self.start()

    def stop_all(self) -> None:
        """SIGTERM every live triggerer (a restart, never a kill: no pod is deleted for it)."""
        for proc in self.live:
            proc.stop(timeout=60)
        self.live.clear()
