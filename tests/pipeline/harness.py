"""Real parts for pipeline and service tests: Airflow's Execution API over HTTP, the fake cluster, the ledger.

``AirflowServer`` serves the real Task Execution API app (Airflow 3.3.2, SQLite metadata DB) with
uvicorn on 127.0.0.1 from a daemon thread, once per test session (its cold start costs seconds).
``World`` ties one fake cluster, one ledger and one XCom client together and makes jobs: a DAG
run with a real TI, a pod on the fake cluster, and the matching ``JobSpec``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from api_client.client import ExecutionAPIClient
from api_client.store import XComRef
from finalizer.config import FinalizerConfig, StepRetry
from finalizer.jobs import (
    BatchJobRef,
    ClusterRef,
    FinishSettings,
    JobSpec,
    Outcome,
    PodRef,
    StartupRules,
    Step,
    TaskInstanceRef,
    batch_job_spec,
)
from finalizer.kube.clients import KubeClients
from finalizer.ledger import Ledger
from finalizer.ledger.records import JobRecord
from finalizer.pipeline import Pipeline, StepHook
from finalizer.retry import classify
from finalizer.seams import ClusterOps, Foundation, Wiring
from finalizer.testing.airflow_env import AirflowEnv, RunInfo
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.fake_kube.jobs import job_manifest
from finalizer.wiring import StoreSink
from tests.support.polling import eventually

DAG_ID = "kpof_pipeline"
TASK_ID = "kpo"
NS = "default"
DAG_SOURCE = f"""
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("{DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    EmptyOperator(task_id="{TASK_ID}")
"""

#: Fast retries so fault storms finish quickly but still exercise backoff.
FAST_RETRY = StepRetry(max_attempts=8, base_delay=0.01, max_delay=0.1, deadline=10.0)


def fast_config(tmp: Path, **overrides: Any) -> FinalizerConfig:
    values: dict[str, Any] = {
        "state_dir": tmp,
        "retry": {
            step: FAST_RETRY
            for step in (
                "read_pod",
                "read_xcom",
                "push_xcom",
                "diagnostics",
                "stop_sidecar",
                "cleanup",
                "ledger",
            )
        },
        "call_timeout": 10.0,
        "heartbeat_interval": 0.2,
        "stale_threshold": 1.5,
        "adopt_interval": 0.2,
        "lag_tick_interval": 0.05,
        "drain_timeout": 5.0,
        "ledger_deadline": 5.0,
    }
    values.update(overrides)
    return FinalizerConfig.model_validate(values)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowServer:
    """The real Execution API app over real HTTP, in its own thread and loop."""

    def __init__(self, env: AirflowEnv) -> None:
        self.env = env
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @contextmanager
    def running(self) -> Iterator[AirflowServer]:
        import uvicorn

        ready = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            async with self.env.execution_api_app() as app:
                config = uvicorn.Config(
                    app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning"
                )
                self._server = uvicorn.Server(config)
                task = asyncio.create_task(self._server.serve())
                while not self._server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
                    await asyncio.sleep(0.01)
                ready.set()
                await task

        def main() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # pragma: no cover - surfaced below
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=main, name="airflow-execution-api", daemon=True)
        self._thread.start()
        ready.wait(60)
        if errors or not ready.is_set():
            raise RuntimeError(f"the Execution API server did not start: {errors}")
        try:
            yield self
        finally:
            self._server.should_exit = True
            self._thread.join(10)

    def client(self) -> ExecutionAPIClient:
        return ExecutionAPIClient(self.base_url, token=self.token)


def start_airflow(home: Path) -> tuple[AirflowEnv, str, RunInfo]:
    """A fresh Airflow metadata DB with the test DAG; returns the env, a long-lived token, a run."""
    env = AirflowEnv.prepare(home)
    env.migrate()
    env.add_dag("kpof_pipeline.py", DAG_SOURCE)
    run = env.create_run(DAG_ID)
    token = env.mint_token(run.ti(TASK_ID).id, valid_for=6 * 3600)
    return env, token, run


def warm_up(server: AirflowServer, run: RunInfo) -> None:
    """Pay the app's cold start (seconds) once, before any test's timeouts run."""

    async def ping() -> None:
        async with server.client() as client:
            ref = XComRef(run.dag_id, run.run_id, TASK_ID, "warm_up")
            await client.xcoms.set(ref, 1)
            assert await client.xcoms.get(ref) == 1

    asyncio.run(ping())


@dataclass
class World:
    """One fake cluster, one ledger URL, one Airflow: makes jobs and reads results back."""

    kube: FakeKube
    airflow: AirflowServer
    ledger_url: str
    config: FinalizerConfig
    jobs: list[JobSpec] = field(default_factory=list)

    @property
    def env(self) -> AirflowEnv:
        return self.airflow.env

    def make_job(
        self,
        *,
        xcom: str | bytes | None = None,
        sidecar: bool = True,
        start: bool = True,
        startup: StartupRules | None = None,
        **settings: Any,
    ) -> JobSpec:
        """A fresh TI (new DAG run) and a running pod (XCom written if given) → its JobSpec."""
        name = f"kpo-{uuid.uuid4().hex[:8]}"
        pod = self.kube.create_pod(NS, name=name, with_xcom_sidecar=sidecar)
        if start:
            self.kube.start(NS, name)
        if xcom is not None:
            self.kube.write_xcom(NS, name, xcom)
        spec = JobSpec(
            ti=self._ti(),
            cluster=ClusterRef(config_dict=self.kube.kubeconfig),
            pod=PodRef(namespace=NS, name=name, uid=pod["metadata"]["uid"]),
            settings=FinishSettings(**settings),
            startup=startup or StartupRules(),
        )
        self.jobs.append(spec)
        return spec

    def _ti(self) -> TaskInstanceRef:
        ti = self.env.create_run(DAG_ID).ti(TASK_ID)
        return TaskInstanceRef(
            id=ti.id, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, try_number=max(1, ti.try_number)
        )

    def make_batch_job(
        self,
        manifest: dict[str, Any] | None = None,
        *,
        job: dict[str, Any] | None = None,
        startup: StartupRules | None = None,
        **settings: Any,
    ) -> JobSpec:
        """A fresh TI and a batch/v1 Job on the fake cluster (``job_manifest`` kwargs) → its JobSpec.

        ``job``: ``BatchJobRef`` fields (``unwrap_single``, ``delete_job``, …)."""
        name = f"job-{uuid.uuid4().hex[:8]}"
        created = self.kube.create_job(NS, job_manifest(name, **(manifest or {})))
        ref = BatchJobRef(namespace=NS, name=name, uid=created["metadata"]["uid"], **(job or {}))
        spec = batch_job_spec(
            self._ti(),
            ClusterRef(config_dict=self.kube.kubeconfig),
            ref,
            FinishSettings(**settings),
            startup or StartupRules(),
        )
        self.jobs.append(spec)
        return spec

    def member_names(self, spec: JobSpec) -> list[str]:
        """Names of the pods the sidecar was exec'ed into for this Job (each member read or stopped)."""
        prefix = f"{spec.pod.name}-"
        return sorted(
            {c.name for c in self.kube.exec_commands(spec.pod.namespace) if c.name.startswith(prefix)}
        )

    def xcom(self, spec: JobSpec, key: str = "return_value") -> Any:
        """The XCom as Airflow stores it; KeyError when absent."""
        return self.env.get_xcom(spec.ti.dag_id, spec.ti.run_id, spec.ti.task_id, key, spec.ti.map_index)

    def xcom_raw(self, spec: JobSpec, key: str = "return_value") -> Any:
        return self.env.get_xcom_raw(spec.ti.dag_id, spec.ti.run_id, spec.ti.task_id, key, spec.ti.map_index)

    def has_xcom(self, spec: JobSpec, key: str = "return_value") -> bool:
        try:
            self.xcom(spec, key)
        except KeyError:
            return False
        return True

    def pod(self, spec: JobSpec) -> dict[str, Any] | None:
        return self.kube.get_pod(spec.pod.namespace, spec.pod.name)

    def deletes(self, spec: JobSpec) -> int:
        return sum(
            1 for r in self.kube.requests if r.verb == "delete" and r.name == spec.pod.name and r.status < 300
        )

    def xcom_reads(self, spec: JobSpec, pod: str | None = None) -> int:
        """Times the sidecar ran the XCom read (as a command or as a line on a shell's stdin);
        ``pod``: of that pod (a Job's member), else of the spec's pod."""
        commands = self.kube.exec_commands(spec.pod.namespace, pod or spec.pod.name)
        return sum(1 for c in commands if "return.json" in c.text)

    def sidecar_stops(self, spec: JobSpec, pod: str | None = None) -> int:
        """Times the sidecar ran the provider's stop (its ``kill``; the fallback only after a failed one)."""
        commands = self.kube.exec_commands(spec.pod.namespace, pod or spec.pod.name)
        return sum(1 for c in commands if "pgrep" in c.text)

    def exec_sessions(self, spec: JobSpec) -> int:
        return sum(1 for r in self.kube.requests if r.verb == "exec" and r.name == spec.pod.name)

    def wiring(self, ledger_url: str | None = None) -> Wiring:
        """The real foundation (ledger, kube pool, HTTP XCom client) for a Finalizer."""
        url, server = ledger_url or self.ledger_url, self.airflow

        async def wire(config: FinalizerConfig, stack: AsyncExitStack) -> Foundation:
            ledger = await Ledger.connect(
                url,
                connect_timeout=config.ledger_deadline,
                operation_timeout=min(5.0, config.ledger_deadline),
                stale_threshold=config.stale_threshold,
            )
            stack.push_async_callback(ledger.aclose)
            clients = KubeClients()
            stack.push_async_callback(clients.aclose)
            client = server.client()
            stack.push_async_callback(client.aclose)

            async def cluster_for(spec: JobSpec) -> ClusterOps:
                return await clients.get(spec.cluster)

            return Foundation(
                ledger=ledger, cluster_for=cluster_for, xcoms=StoreSink(client.xcoms), classify=classify
            )

        return wire


class Rig:
    """A pipeline on the test's own loop over real parts, for step-level tests."""

    def __init__(self, world: World, stack: AsyncExitStack) -> None:
        self.world = world
        self._stack = stack
        self.ledger: Ledger | None = None
        self.owner = ""
        self.clients: KubeClients | None = None
        self.client: ExecutionAPIClient | None = None

    async def open(self) -> Rig:
        self.ledger = await Ledger.connect(
            self.world.ledger_url, stale_threshold=self.world.config.stale_threshold
        )
        self._stack.push_async_callback(self.ledger.aclose)
        self.clients = KubeClients()
        self._stack.push_async_callback(self.clients.aclose)
        self.client = self.world.airflow.client()
        self._stack.push_async_callback(self.client.aclose)
        self.owner = await self.ledger.register_instance("test", 0)
        return self

    def pipeline(self, on_step: StepHook | None = None, config: FinalizerConfig | None = None) -> Pipeline:
        assert self.ledger is not None
        assert self.clients is not None
        assert self.client is not None
        clients = self.clients

        async def cluster_for(spec: JobSpec) -> ClusterOps:
            return await clients.get(spec.cluster)

        return Pipeline(
            config=config or self.world.config,
            cluster_for=cluster_for,
            ledger=self.ledger,
            xcoms=StoreSink(self.client.xcoms),
            classify=classify,
            on_step=on_step,
        )

    async def run(self, spec: JobSpec, on_step: StepHook | None = None) -> Any:
        assert self.ledger is not None
        rec = await self.ledger.submit(spec, self.owner)
        return await self.pipeline(on_step).run(spec, rec)


async def resume(world: World, spec: JobSpec, *, wait_stale: bool = False) -> Outcome:
    """The job resumed by a fresh instance (new owner) on the same ledger, once it can adopt it
    (``wait_stale``: after the dead owner's heartbeat went stale)."""
    async with AsyncExitStack() as stack:
        fresh = await Rig(world, stack).open()
        assert fresh.ledger is not None
        ledger = fresh.ledger

        async def adopted() -> Any:
            rec = await ledger.submit(spec, fresh.owner)
            if rec.owner == fresh.owner:
                return rec
            assert wait_stale, f"job not adopted: owner {rec.owner}"
            return None  # the old owner's heartbeat must go stale first

        adoptee: JobRecord = await eventually(adopted, interval=0.1, what="the dead owner going stale")
        return await fresh.pipeline().run(spec, adoptee)


#: Every step boundary the step hook sees (a batch job's REGISTERED: its first member read, persisted).
BOUNDARIES = [
    Step.REGISTERED,
    Step.COMPLETION_SEEN,
    Step.XCOM_PERSISTED,
    Step.XCOM_PUSHED,
    Step.DIAGNOSTICS_CAPTURED,
    Step.SIDECAR_STOPPED,
    Step.POD_CLEANED,
]


async def cancel_at(rig: Rig, spec: JobSpec, step: Step) -> None:
    """Run the job and cancel it right after ``step`` is reached (a pod's REGISTERED: before it
    starts; a batch job's: once its first member read is persisted)."""
    assert rig.ledger is not None
    rec = await rig.ledger.submit(spec, rig.owner)
    if step is Step.REGISTERED and spec.batch_job is None:
        return
    with anyio.CancelScope() as scope:

        async def on_step(job: JobSpec, current: Any) -> None:
            if current.step == step:
                scope.cancel()

        await rig.pipeline(on_step).run(spec, rec)
    assert scope.cancelled_caught, f"the job never reached {step.name}"


async def kill_at(world: World, spec: JobSpec, step: Step, state_dir: Path) -> JobRecord:
    """Run the job in a child process that SIGKILLs itself right after ``step``; returns the
    job's record as the ledger then holds it."""
    args = {
        "spec": spec.model_dump(mode="json"),
        "ledger_url": world.ledger_url,
        "base_url": world.airflow.base_url,
        "token": world.airflow.token,
        "kill_at": step.name,
        "state_dir": str(state_dir),
    }
    child = [sys.executable, "-m", "tests.pipeline.crash_child", json.dumps(args)]
    result = await anyio.run_process(child, check=False)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    return await recorded(world, spec)


async def recorded(world: World, spec: JobSpec) -> JobRecord:
    """The job's record as the ledger holds it now (read through a connection of its own)."""
    ledger = await Ledger.connect(world.ledger_url)
    try:
        rec = await ledger.get(spec.key)
    finally:
        await ledger.aclose()
    assert rec is not None
    return rec


async def rerun_elsewhere(world: World, spec: JobSpec, tmp_path: Path) -> Outcome:
    """The same job on another triggerer: its own empty local ledger; Airflow's XCom store is shared."""
    other = World(
        world.kube, world.airflow, f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite3'}", world.config
    )
    async with AsyncExitStack() as stack:
        elsewhere = await Rig(other, stack).open()
        outcome: Outcome = await elsewhere.run(spec)
    return outcome
