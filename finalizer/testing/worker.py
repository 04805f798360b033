"""Deferring and resuming a task exactly as a worker does, with no scheduler and no worker running.

``defer_like_worker`` moves a TI QUEUED → RUNNING → DEFERRED through the real Task Execution API
with the same calls and payloads the Task SDK's supervisor makes (``PATCH /task-instances/{id}/run``,
then ``PATCH /task-instances/{id}/state`` with a ``TIDeferredStatePayload`` whose ``trigger_kwargs``
went through ``airflow.sdk.serde.serialize``, as ``task_runner._defer_task`` does); a triggerer then
picks the trigger up like any other. ``run_like_worker`` runs (or resumes after its trigger event)
the TI with the real Task SDK supervisor and task process. Typical use::

    env = AirflowEnv.prepare(home, db_url); env.migrate(); env.add_dag("d.py", SRC)
    with TriggererProcess(env, extra_env={...}):
        run = env.create_run("d")
        async with env.execution_api_app() as app, worker_client(app) as client:
            await defer_like_worker(client, env, run.ti("t"), trigger)
        final = wait_for_ti_state(run.ti("t"), {"success", "failed"})
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from finalizer.testing.airflow_env import EXECUTION_API_VERSION, AirflowEnv, TIInfo
from finalizer.testing.polling import current_ti

__all__ = ["defer_like_worker", "run_like_worker", "serialize_trigger", "worker_client"]


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
