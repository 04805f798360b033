"""A real ``airflow triggerer`` subprocess against an ``AirflowEnv``'s metadata DB.

For tests, the demo and benchmarks: the triggerer shares the harness's metadata DB
(``AirflowEnv.env``) and picks deferred tasks up like any other triggerer (defer them with
``finalizer.testing.worker.defer_like_worker``)::

    with TriggererProcess(env, extra_env={...}) as triggerer:      # started, waits for its Job row
        ...
    triggerer.logs()       # the process's own output (finalizer.testing.logs for a task's trigger log)

``start`` returns only once the process's own ``TriggererJob`` row is running with a heartbeat, so
work deferred afterwards is certain to be picked up. ``kill()`` sends SIGKILL (crash tests);
``stop()`` SIGTERM (graceful). The process runs in its own session so a kill takes its
trigger-runner child with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.polling import wait_for

__all__ = ["TRIGGERER_JOB_TYPE", "TriggererProcess"]

TRIGGERER_JOB_TYPE = "TriggererJob"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _triggerer_jobs() -> dict[int, tuple[str | None, datetime | None]]:
    """Triggerer Job rows: id → (state, latest_heartbeat)."""
    from airflow.jobs.job import Job
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(Job.id, Job.state, Job.latest_heartbeat).where(Job.job_type == TRIGGERER_JOB_TYPE)
        ).all()
        return {int(r[0]): (r[1], r[2]) for r in rows}


class TriggererProcess:
    """One ``airflow triggerer`` subprocess against ``env``'s metadata DB."""

    def __init__(
        self,
        env: AirflowEnv,
        *,
        extra_env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        name: str | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.env = env
        self.name = name or f"triggerer-{uuid.uuid4().hex[:6]}"
        self.log_path = log_path or env.home / f"{self.name}.log"
        self.startup_timeout = startup_timeout
        self._extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        #: The triggerer's Job id (set by ``start``).
        self.job_id: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def process_env(self) -> dict[str, str]:
        """The subprocess environment: this process's, the Airflow env, then ``extra_env``."""
        environ = dict(os.environ)
        environ.update(self.env.env)
        environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
        environ.setdefault("no_proxy", "127.0.0.1,localhost")
        environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
        environ["PYTHONUNBUFFERED"] = "1"
        # Each triggerer serves its logs on a port; a fixed one (8794) would clash between
        # triggerers running side by side on one machine.
        environ["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(_free_port())
        environ.update(self._extra_env)
        return environ

    def start(self) -> int:
        """Start the process and wait until its Job row is running with a heartbeat; return the job id."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        before = set(_triggerer_jobs())
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "triggerer"],
            env=self.process_env(),
            cwd=str(self.env.home),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> int | None:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._proc.returncode} during start-up:\n{self.logs()[-4000:]}"
                )
            for job_id, (state, heartbeat) in _triggerer_jobs().items():
                if job_id not in before and state == "running" and heartbeat is not None:
                    return job_id
            return None

        try:
            self.job_id = int(wait_for(up, self.startup_timeout, 0.25, f"{self.name} to heartbeat"))
        except BaseException:
            self.kill()
            raise
        return self.job_id

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait (graceful shutdown: triggers are cancelled, never killed by a user)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the whole process group (a crash: nothing runs its clean-up)."""
        proc = self._proc
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def logs(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> TriggererProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(timeout=30)
