"""The demo's world: a real Airflow metadata DB, the fake cluster and a real ``airflow triggerer``.

Built from the shipped test kit (``finalizer.testing``): ``AirflowEnv`` for the SQLite metadata
DB and the DAG, ``FakeKube`` in a thread for the cluster, ``TriggererProcess`` for the
triggerer, ``defer_like_worker`` to defer each task through the real Task Execution API exactly
as a worker's Task SDK does. Every piece registers its own undo step with the ``Cleanup``.

The demo is an application on top of every layer that happens to ship inside ``finalizer/``: it
defers its tasks to ``triggers.pod.FinalizingPodTrigger`` and imports it as any caller would. That
one edge is the explicit, documented exception of the layers contract (``pyproject.toml``); no
other ``finalizer`` module may import ``triggers``.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finalizer.demo.cleanup import Cleanup
from finalizer.demo.scenario import DAG_ID, NAMESPACE, SKIP_EXIT_CODE, TaskPlan


def dag_source(tasks: list[TaskPlan]) -> str:
    """The demo DAG: one ``FinalizingKubernetesPodOperator`` per planned task."""
    return textwrap.dedent(
        f'''\
        """kpo-finalizer demo: {len(tasks)} deferrable KPO tasks finished inside the triggerer."""
        from datetime import datetime

        from airflow.sdk import DAG

        from triggers.operator import FinalizingKubernetesPodOperator

        with DAG({DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
            for i in range({len(tasks)}):
                FinalizingKubernetesPodOperator(
                    task_id=f"pod_{{i:03d}}",
                    name=f"kpo-demo-{{i:03d}}",
                    namespace={NAMESPACE!r},
                    image="alpine:3.22",
                    cmds=["sh", "-c", "echo working; echo '{{}}' > /airflow/xcom/return.json"],
                    deferrable=True,
                    do_xcom_push=True,
                    skip_on_exit_code=[{SKIP_EXIT_CODE}],
                    retries=0,
                )
        '''
    )


class World:
    """Owns the pieces; ``build`` starts them (registering undo steps), the runner drives them."""

    def __init__(self, home: Path, cleanup: Cleanup, say: Callable[[str], None]) -> None:
        self.home = home
        self.cleanup = cleanup
        self.say = say
        self.env: Any = None
        self.kube: Any = None
        self.triggerer: Any = None
        self.run: Any = None
        self.uids: dict[str, str] = {}  # task_id -> pod uid
        self._starter: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------------

    def build(self, tasks: list[TaskPlan]) -> None:
        """Metadata DB + DAG, fake cluster with running pods, triggerer up, every task deferred."""
        from finalizer.testing.airflow_env import AirflowEnv

        self.say(f"home {self.home}")
        self.env = AirflowEnv.prepare(
            self.home / "airflow",
            extra_env={"AIRFLOW__KPO_FINALIZER__STATE_DIR": str(self.home / "kpo-finalizer")},
        )
        self.say("creating the Airflow metadata DB (SQLite)…")
        self.env.migrate()
        self.env.add_dag("kpo_finalizer_demo.py", dag_source(tasks))

        self._start_fake_kube()
        started = self._start_triggerer_in_background()
        self.run = self.env.create_run(DAG_ID)
        for task in tasks:
            self._create_running_pod(task)
        self.say(f"{len(tasks)} pods running on the fake cluster; deferring the tasks like a worker…")
        asyncio.run(self._defer_all(tasks))
        started()
        self.say(f"airflow triggerer up (pid {self.triggerer.pid}); waiting for it to take the triggers…")

    def _start_fake_kube(self) -> None:
        from finalizer.testing import FakeKube

        stack = ExitStack()
        self.kube = stack.enter_context(FakeKube.in_thread())
        self.cleanup.push("stop the fake Kubernetes API", stack.close)
        self.say(f"fake Kubernetes API at {self.kube.url}")

    def _start_triggerer_in_background(self) -> Callable[[], None]:
        """Start ``airflow triggerer`` on a thread (it takes seconds); the result waits for it."""
        from finalizer.testing.triggerer_process import TriggererProcess

        self.triggerer = TriggererProcess(self.env, log_path=self.home / "triggerer.log", name="triggerer")
        self.cleanup.push("stop the airflow triggerer", self._stop_triggerer)
        error: list[BaseException] = []

        def start() -> None:
            try:
                self.triggerer.start()
            except BaseException as exc:
                error.append(exc)

        thread = threading.Thread(target=start, name="start-triggerer", daemon=True)
        self._starter = thread
        thread.start()

        def join() -> None:
            while thread.is_alive():
                thread.join(0.2)  # short waits: Ctrl-C stays responsive
            if error:
                raise error[0]

        return join

    def _stop_triggerer(self) -> None:
        # Interrupted while the starter thread is between "decided to start" and Popen: wait for
        # the process to exist (or the thread to give up), so no triggerer is spawned after this.
        deadline = time.monotonic() + 30
        while (
            self._starter is not None
            and self._starter.is_alive()
            and self.triggerer.pid is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        if self.triggerer is not None and self.triggerer.pid is not None:
            self.triggerer.stop(timeout=20)
        if self._starter is not None:
            self._starter.join(10)  # start() sees the process gone and returns

    def _create_running_pod(self, task: TaskPlan) -> None:
        labels = {
            "dag_id": DAG_ID,
            "task_id": task.task_id,
            "run_id": "demo",
            "kubernetes_pod_operator": "True",
        }
        pod = self.kube.create_pod(NAMESPACE, name=task.pod_name, labels=labels)
        self.kube.start(NAMESPACE, task.pod_name)
        self.uids[task.task_id] = pod["metadata"]["uid"]

    def make_trigger(self, task: TaskPlan) -> Any:
        from triggers.pod import FinalizingPodTrigger  # imports the provider: only when deferring

        return FinalizingPodTrigger(
            pod_name=task.pod_name,
            pod_namespace=NAMESPACE,
            trigger_start_time=datetime.now(UTC),
            base_container_name="base",
            config_dict=self.kube.kubeconfig,
            on_finish_action="delete_pod",
            pod_uid=self.uids[task.task_id],
            do_xcom_push=True,
            multiple_outputs=task.multiple_outputs,
            skip_on_exit_code=[SKIP_EXIT_CODE],
        )

    async def _defer_all(self, tasks: list[TaskPlan]) -> None:
        from finalizer.testing.worker import defer_like_worker, worker_client

        async with self.env.execution_api_app() as app, worker_client(app) as client:
            for task in tasks:
                ti = self.run.ti(task.task_id)
                await defer_like_worker(client, self.env, ti, self.make_trigger(task))

    # -- observation ----------------------------------------------------------------------------

    def assigned_triggers(self) -> int:
        """How many triggers a triggerer has taken (``trigger.triggerer_id`` set)."""
        from airflow.models.trigger import Trigger
        from airflow.utils.session import create_session
        from sqlalchemy import func, select

        with create_session() as session:
            count = session.scalar(
                select(func.count()).select_from(Trigger).where(Trigger.triggerer_id.is_not(None))
            )
        return int(count or 0)

    def ti_states(self) -> dict[str, str | None]:
        """task_id → state for the demo run, in one query."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(TaskInstance.task_id, TaskInstance.state).where(
                    TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == self.run.run_id
                )
            ).all()
        return {str(r[0]): None if r[1] is None else str(r[1]) for r in rows}

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        """The stored XCom as Airflow deserializes it; raises ``KeyError`` when absent."""
        return self.env.get_xcom(DAG_ID, self.run.run_id, task_id, key)

    def pod_gone(self, task: TaskPlan) -> bool:
        return self.kube.get_pod(NAMESPACE, task.pod_name) is None

    def finish_pod(self, task: TaskPlan) -> None:
        """The base container writes its XCom file (if any) and exits with the planned code."""
        if task.xcom_file is not None:
            self.kube.write_xcom(NAMESPACE, task.pod_name, task.xcom_file)
        message = None if task.exit_code == 0 else f"demo task {task.task_id} exited {task.exit_code}"
        self.kube.terminate(NAMESPACE, task.pod_name, "base", task.exit_code, message)
