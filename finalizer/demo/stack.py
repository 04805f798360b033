"""A full Airflow deployment as child processes: api-server, scheduler, dag-processor, triggerer.

For ``bench e2e``: the classic path only shows its cost with every real component running (a
scheduler that re-queues the resumed task, a LocalExecutor worker that re-enters it). Each
component runs in its own session (process group) with its output in a log file; ``stop``
sends SIGTERM to the whole group, then SIGKILL after a grace period, so nothing outlives us.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AirflowProcess:
    """``airflow <command…>`` in its own process group, logging to ``log_path``."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] | None = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=dict(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def name(self) -> str:
        return " ".join(self.args)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds."""
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        deadline = time.monotonic() + grace
        while _group_exists(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class AirflowStack:
    """The four long-running components against one metadata DB (``env``: the Airflow env vars)."""

    COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(self, env: Mapping[str, str], home: Path, api_port: int) -> None:
        self.env = dict(env)
        self.home = home
        self.api_port = api_port
        self.processes: dict[str, AirflowProcess] = {}

    def start(self) -> None:
        for component in self.COMPONENTS:
            args = [component]
            if component == "api-server":
                args += ["--port", str(self.api_port), "--host", "127.0.0.1"]
            self.processes[component] = AirflowProcess(
                args, self.env, self.home, self.home / f"{component}.log"
            )

    def check(self) -> None:
        """Raise if a component died (with the tail of its log)."""
        for name, proc in self.processes.items():
            if not proc.alive():
                raise RuntimeError(
                    f"airflow {name} exited with {proc.proc.returncode}:\n{proc.logs()[-3000:]}"
                )

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        self.processes.clear()


def fresh_postgres_url() -> str | None:
    """A fresh, empty PostgreSQL database URL, or None when no server is reachable.

    LocalExecutor on SQLite is a poor model of production; benchmarks prefer PostgreSQL.
    """
    admin = os.environ.get("KPO_FINALIZER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg2  # type: ignore[import-untyped]

        conn = psycopg2.connect(admin, connect_timeout=3)
    except Exception:
        return None
    name = f"kpo_bench_{uuid.uuid4().hex[:10]}"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    import psycopg2

    admin, name = url.rsplit("/", 1)
    conn = psycopg2.connect(f"{admin}/postgres".replace("postgresql+psycopg2", "postgresql"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
