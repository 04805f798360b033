"""A real ``airflow triggerer`` subprocess, and deferring a task exactly as a worker does.

For tests, the demo and benchmarks: no scheduler and no worker need to run. The triggerer shares
the harness's metadata DB (``AirflowEnv.env``); a TI is moved QUEUED → RUNNING → DEFERRED through
the real Task Execution API with the same calls and payloads the Task SDK's supervisor makes
(``PATCH /task-instances/{id}/run``, then ``PATCH /task-instances/{id}/state`` with a
``TIDeferredStatePayload`` whose ``trigger_kwargs`` went through ``airflow.sdk.serde.serialize``,
as ``task_runner._defer_task`` does). The triggerer then picks the trigger up like any other.

Typical use::

    env = AirflowEnv.prepare(home, db_url); env.migrate(); env.add_dag("d.py", SRC)
    with TriggererProcess(env, extra_env={...}) as triggerer:      # started, waits for its Job row
        run = env.create_run("d")
        async with env.execution_api_app() as app, worker_client(app) as client:
            await defer_like_worker(client, env, run.ti("t"), trigger)
        final = wait_for_ti_state(ti, {"success", "failed"})
    triggerer.logs()       # the process's own output; trigger_logs(env, ti) for the task's trigger log

``TriggererProcess.kill()`` sends SIGKILL (crash tests); ``stop()`` SIGTERM (graceful). The process
runs in its own session so a kill takes its trigger-runner child with it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from finalizer.testing.airflow_env import EXECUTION_API_VERSION, AirflowEnv, TIInfo

__all__ = [
    "TriggererProcess",
    "current_ti",
    "defer_like_worker",
    "run_like_worker",
    "serialize_trigger",
    "trigger_logs",
    "wait_for",
    "wait_for_ti_state",
    "worker_client",
]

TRIGGERER_JOB_TYPE = "TriggererJob"


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


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


# -- deferring a task as a worker does ------------------------------------------------------------


def serialize_trigger(trigger: Any) -> tuple[str, dict[str, Any]]:
    """``(classpath, trigger_kwargs)`` exactly as the Task SDK sends them (``serde.serialize``)."""
    from airflow.sdk.serde import serialize as serde_serialize

    classpath, kwargs = trigger.serialize()
    encoded = serde_serialize(kwargs)
    if not isinstance(encoded, dict):
        raise TypeError(f"trigger kwargs serialized to {type(encoded).__name__}, expected a dict")
    return classpath, encoded


@contextlib.asynccontextmanager
async def worker_client(app: Any, base_url: str = "http://execution") -> AsyncIterator[Any]:
    """An ``httpx.AsyncClient`` on the in-process Execution API app, with the API version header."""
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        headers={"Airflow-API-Version": EXECUTION_API_VERSION},
        timeout=60,
    ) as client:
        yield client


async def defer_like_worker(
    client: Any,
    env: AirflowEnv,
    ti: TIInfo,
    trigger: Any,
    *,
    next_method: str = "trigger_reentry",
    next_kwargs: Mapping[str, Any] | None = None,
    trigger_timeout: timedelta | None = None,
) -> None:
    """QUEUED → RUNNING → DEFERRED through the Execution API, as the Task SDK's supervisor does.

    The TI is first set QUEUED with its try number raised by one — what the scheduler does
    before a worker starts it — unless it is already QUEUED.
    """
    current = env.get_ti(ti.id)
    if current.state != "queued":
        env.set_ti_state(ti.id, "queued", try_number=current.try_number + 1)
    run_body = {
        "state": "running",
        "hostname": socket.gethostname(),
        "unixname": getpass.getuser(),
        "pid": os.getpid(),
        "start_date": datetime.now(UTC).isoformat(),
    }
    token = env.mint_token(ti.id, scope="workload")
    response = await client.patch(
        f"/task-instances/{ti.id}/run", json=run_body, headers={"Authorization": f"Bearer {token}"}
    )
    if response.status_code != 200:
        raise RuntimeError(f"PATCH /run for {ti.id} answered {response.status_code}: {response.text}")
    token = response.headers.get("Refreshed-API-Token") or env.mint_token(ti.id)

    from airflow.sdk.serde import serialize as serde_serialize

    classpath, trigger_kwargs = serialize_trigger(trigger)
    body: dict[str, Any] = {
        "state": "deferred",
        "classpath": classpath,
        "trigger_kwargs": trigger_kwargs,
        "next_method": next_method,
        "next_kwargs": serde_serialize(dict(next_kwargs or {})),
    }
    if trigger_timeout is not None:
        body["trigger_timeout"] = trigger_timeout.total_seconds()
    response = await client.patch(
        f"/task-instances/{ti.id}/state", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    if response.status_code not in (200, 204):
        raise RuntimeError(
            f"PATCH /state deferred for {ti.id} answered {response.status_code}: {response.text}"
        )


def run_like_worker(env: AirflowEnv, ti: TIInfo, *, log_path: Path | None = None) -> int:
    """Run (or resume) the TI with the real Task SDK supervisor and task process, as a worker does.

    What the scheduler and executor would do first is done here: the TI is set QUEUED (a
    deferred task resumed by its trigger event is SCHEDULED, with ``next_method`` and
    ``next_kwargs`` set; those are kept). The task process is forked by
    ``supervise_task``, parses the DAG file from the bundle, and talks to the Execution API
    in this process (``InProcessExecutionAPI``, as the triggerer's supervisor does). Blocking;
    returns the task process's exit code. The task's log goes to ``log_path`` (default: a
    file under the Airflow home).
    """
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
    from airflow.executors.workloads.task import ExecuteTask
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.api.client import Client
    from airflow.sdk.execution_time.supervisor import supervise_task
    from airflow.utils.session import create_session

    row = current_ti(ti)
    env.set_ti_state(row.id, "queued")
    with create_session() as session:
        orm = session.get(TaskInstance, uuid.UUID(row.id))
        if orm is None:
            raise KeyError(f"no task instance {row.id}")
        workload = ExecuteTask.make(orm)
    client = Client(base_url=None, token="", dry_run=True, transport=InProcessExecutionAPI().transport)
    client.base_url = "http://in-process.invalid./"
    target = log_path or env.home / f"worker-{row.task_id}-{uuid.uuid4().hex[:6]}.log"
    return int(
        supervise_task(
            ti=workload.ti,
            bundle_info=workload.bundle_info,
            dag_rel_path=workload.dag_rel_path,
            token=workload.token,
            client=client,
            log_path=str(target),
        )
    )


def current_ti(ti: TIInfo) -> TIInfo:
    """The TI row now, found by (dag_id, run_id, task_id, map_index).

    Not by id: a retry (UP_FOR_RETRY) moves the finished try to ``task_instance_history`` and
    gives the TI row a new id.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == ti.dag_id,
                TaskInstance.run_id == ti.run_id,
                TaskInstance.task_id == ti.task_id,
                TaskInstance.map_index == ti.map_index,
            )
        ).one()
        return TIInfo(
            id=str(row.id),
            dag_id=row.dag_id,
            run_id=row.run_id,
            task_id=row.task_id,
            map_index=int(row.map_index),
            try_number=int(row.try_number or 0),
            state=None if row.state is None else str(row.state),
        )


def wait_for_ti_state(ti: TIInfo, states: Iterable[str], timeout: float = 60.0) -> TIInfo:
    """Poll Airflow's own model until the TI is in one of ``states``; return it."""
    wanted = set(states)

    def check() -> TIInfo | None:
        info = current_ti(ti)
        return info if info.state in wanted else None

    try:
        result: TIInfo = wait_for(check, timeout, 0.2, f"TI {ti.task_id} to reach {sorted(wanted)}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; it is {current_ti(ti).state}") from None
    return result


def trigger_logs(env: AirflowEnv, ti: TIInfo) -> str:
    """The trigger log(s) Airflow wrote for this TI (what the task log shows under the triggerer)."""
    base = env.home / "logs"
    wanted = {f"dag_id={ti.dag_id}", f"run_id={ti.run_id}", f"task_id={ti.task_id}"}
    texts = []
    for path in sorted(base.rglob("*trigger*")):
        if path.is_file() and wanted <= set(path.relative_to(base).parts):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)
