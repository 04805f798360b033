"""The tasks of one ``bench chaos`` run: defer them, end their pods, settle them, read what they left.

A run is one dag run of the chaos DAG: its tasks' pods are created Running on the fake cluster and
each task is deferred through the real Execution API as a worker defers it. ``settle`` waits until
every task is terminal or SCHEDULED (handed to a worker by a classic trigger event); ``resume``
then runs each handed-over task with the real Task SDK worker (``run_like_worker``), as the
scheduler would. ``facts`` reads back states, the audit timeline, XComs and the pod.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from finalizer.bench.chaos_checks import TERMINAL, Expect, Facts, PodRequest
from finalizer.bench.chaos_world import DAG_ID, IMAGE, NAMESPACE, World
from finalizer.bench.triggerer_world import operator_trigger

#: How a pod ends: ``drive(kube, namespace, pod_name)``.
Drive = Callable[[Any, str, str], None]


@dataclass(frozen=True, slots=True)
class Case:
    """One task of a run: its task id, how its pod is made and ends, and what it must show."""

    task_id: str
    drive: Drive
    expect: Expect
    sidecar: bool = True


@dataclass
class Task:
    case: Case
    ti: Any  # TIInfo
    pod: str
    uid: str = ""


@dataclass
class Run:
    run_id: str
    tasks: list[Task]
    deferred_at: float = 0.0
    settled_at: float | None = None
    handed_over: list[str] = field(default_factory=list)  # task ids resumed by a worker
    ended: dict[str, float] = field(default_factory=dict)  # task id -> when its pod's base ended

    @property
    def names(self) -> list[str]:
        return [t.pod for t in self.tasks]


def write_and_exit(content: str | bytes, code: int = 0) -> Drive:
    def drive(kube: Any, namespace: str, name: str) -> None:
        kube.write_xcom(namespace, name, content)
        kube.terminate(namespace, name, "base", code, f"exited {code}")

    return drive


def plain_xcom(run_id: str, index: int) -> dict[str, Any]:
    return {"run": run_id, "task": index, "values": [index, index * 0.5, None, True]}


def plain_cases(run_id: str, count: int) -> list[Case]:
    """``count`` plain tasks: a JSON XCom, exit 0; success with that XCom, pod deleted."""
    import json

    return [
        Case(
            f"p{i:03d}",
            write_and_exit(json.dumps(plain_xcom(run_id, i))),
            Expect("success", plain_xcom(run_id, i)),
        )
        for i in range(count)
    ]


def prepare(world: World, run_id: str, cases: list[Case], pod_prefix: str) -> Run:
    """The dag run, one Running pod per case, every task deferred to its trigger like a worker."""
    from finalizer.bench.triggerer_world import defer_all

    dag_run = world.env.create_run(DAG_ID, run_id)
    tasks: list[Task] = []
    for case in cases:
        ti = dag_run.ti(case.task_id)
        pod = f"{pod_prefix}-{case.task_id}".replace("_", "-").lower()
        created = world.kube.create_pod(
            NAMESPACE, name=pod, labels=_labels(ti), with_xcom_sidecar=case.sidecar
        )
        world.kube.start(NAMESPACE, pod)
        tasks.append(Task(case, ti, pod, str(created["metadata"]["uid"])))
    pairs = [(t.ti, build_trigger(world, t)) for t in tasks]
    run = Run(run_id, tasks, deferred_at=time.time())
    asyncio.run(defer_all(world.env, pairs))
    return run


def _labels(ti: Any) -> dict[str, str]:
    return {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id.replace(":", "_")[:63],
        "kubernetes_pod_operator": "True",
        "try_number": "1",
    }


def build_trigger(world: World, task: Task) -> Any:
    """The trigger the worker would defer this task to: the operator's own ``invoke_defer_method``.

    ``triggers`` is imported by name: ``finalizer`` must not import that layer statically.
    """
    return operator_trigger(
        importlib.import_module("triggers.operator").FinalizingKubernetesPodOperator,
        task_id=task.case.task_id,
        pod_name=task.pod,
        namespace=NAMESPACE,
        uid=task.uid,
        kubeconfig_path=world.kubeconfig_path,
        image=IMAGE,
        **world.special.get(task.case.task_id, {}),
    )


def followed(world: World, run: Run, since: float) -> bool:
    """Every pod of the run is followed by a finalizer: a watch opened on the namespace since
    ``since``, or the pod read once by a subscriber joining a running watch."""
    watching, read = False, set()
    for record in world.kube.requests:
        if record.time < since or record.namespace != NAMESPACE:
            continue
        watching = watching or record.verb == "watch"
        if record.verb == "get":
            read.add(record.name)
    return watching or set(run.names) <= read


def end_pods(world: World, run: Run) -> None:
    for task in run.tasks:
        task.case.drive(world.kube, NAMESPACE, task.pod)


def states(run: Run) -> dict[str, str | None]:
    """task id → state now."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.run_id == run.run_id, TaskInstance.dag_id == DAG_ID
            )
        ).all()
    wanted = {t.case.task_id for t in run.tasks}
    return {str(task_id): None if s is None else str(s) for task_id, s in rows if task_id in wanted}


def trigger_holders(run: Run) -> dict[int | None, int]:
    """Triggerer job id → how many of the run's triggers it holds now (None: not assigned yet)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        rows = session.execute(
            select(Trigger.triggerer_id, func.count())
            .join(TaskInstance, TaskInstance.trigger_id == Trigger.id)
            .where(TaskInstance.run_id == run.run_id, TaskInstance.dag_id == DAG_ID)
            .group_by(Trigger.triggerer_id)
        ).all()
    return {None if job is None else int(job): int(n) for job, n in rows}


def settled(run: Run) -> bool:
    """Every task terminal or handed to a worker (SCHEDULED: nothing else moves it without a scheduler)."""
    now = states(run)
    return all(s in TERMINAL or s == "scheduled" for s in now.values())


def wait_settled(run: Run, timeout: float, tick: Callable[[], object] = lambda: None) -> float | None:
    """Poll until ``settled``; the time it did, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if settled(run):
            run.settled_at = time.time()
            return run.settled_at
        tick()  # lets the caller restart a triggerer that exited
        time.sleep(0.5)
    return None


def resume(world: World, run: Run) -> None:
    """Run every handed-over (SCHEDULED) task with the real worker, once."""
    from finalizer.testing.worker import run_like_worker

    for task in run.tasks:
        if states(run).get(task.case.task_id) == "scheduled":
            run.handed_over.append(task.case.task_id)
            run_like_worker(
                world.env, task.ti, log_path=world.home / f"worker-{run.run_id}-{task.case.task_id}.log"
            )


def facts(world: World, run: Run, worker_agents: frozenset[str]) -> dict[str, Facts]:
    """task id → what Airflow and the fake cluster show for it now."""
    from finalizer.bench import chaos_audit
    from finalizer.testing.polling import current_ti

    current = {t.case.task_id: current_ti(t.ti) for t in run.tasks}
    timeline = chaos_audit.transitions([ti.id for ti in current.values()])
    rows = chaos_audit.xcom_rows([run.run_id])
    inserts = chaos_audit.xcom_inserts([run.run_id])
    requests = world.kube.requests
    found: dict[str, Facts] = {}
    for task in run.tasks:
        ti = current[task.case.task_id]
        key = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        pod = world.kube.get_pod(NAMESPACE, task.pod)
        deleting = pod is not None and bool(pod["metadata"].get("deletionTimestamp"))
        found[task.case.task_id] = Facts(
            state=ti.state,
            transitions=timeline.get(ti.id, ()),
            xcoms=tuple(rows.get(key, ())),
            xcom_inserts=tuple(inserts.get(key, ())),
            pod_exists=pod is not None and not deleting,
            pod_labels=dict((pod or {}).get("metadata", {}).get("labels") or {}),
            requests=tuple(
                PodRequest(r.verb, r.time, r.status, r.user_agent in worker_agents)
                for r in requests
                if r.namespace == NAMESPACE and r.name == task.pod
            ),
        )
    return found


def expected(run: Run) -> dict[str, Expect]:
    return {t.case.task_id: t.case.expect for t in run.tasks}


def with_expect(case: Case, **changes: Any) -> Case:
    return replace(case, expect=replace(case.expect, **changes))
