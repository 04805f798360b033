"""``kpo-finalizer bench e2e``: the classic deferrable KPO against ``FinalizingKubernetesPodOperator``.

One real Airflow (api-server, scheduler with LocalExecutor, dag-processor, triggerer; PostgreSQL
when reachable, else SQLite) and one fake cluster with an automatic kubelet. For each scenario both
variants run the same N scripted pods (``fake-kube/run-seconds``, ``fake-kube/xcom``):

* ``idle``: nothing else runs;
* ``contention``: the KPO tasks run in a pool that counts deferred tasks (slots = N); once they are
  all deferred, N higher-priority filler tasks (``sleep``) queue for the same pool. A classic task
  whose pod finished goes back to SCHEDULED, loses its slot and waits behind the fillers; a
  finalized task ends in the triggerer;
* ``paused``: the DAG is paused while its pods run (``finalizer.bench.e2e_paused``);
* ``jobs``, ``jobs-contention``: Kubernetes Jobs, ``KubernetesJobOperator`` against
  ``FinalizingKubernetesJobOperator`` (``finalizer.bench.e2e_jobs``).

Per variant: base-container end → task terminal latency (p50/p95/max; the base end is sampled
from the fake API every 0.1 s, the terminal time is the TI's ``end_date``), pod lifetime after
the base container ended, times the scheduler queued each task (= worker runs with the
LocalExecutor) and whether each task's ``return_value`` XCom is exactly the pod's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from finalizer.bench.report import command_line, latency_summary, machine, render_table, write_json

NAMESPACE = "bench"
VARIANTS = ("classic", "finalizing")
#: ``jobs`` and ``jobs-contention``: Kubernetes Jobs (``finalizer.bench.e2e_jobs``).
SCENARIOS = ("idle", "contention", "paused", "jobs", "jobs-contention")
POOL = "kpo_bench_pool"
TERMINAL = {"success", "failed", "skipped", "up_for_retry", "upstream_failed"}

DAG_SOURCE = (
    '''
"""bench e2e: the same scripted pods through the classic KPO and FinalizingKubernetesPodOperator."""
import json
import os
from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from triggers.operator import FinalizingKubernetesPodOperator

N = int(os.environ.get("KPO_BENCH_TASKS", "1"))
KUBECONFIG = os.environ.get("KPO_BENCH_KUBECONFIG")
RUN = json.loads(os.environ.get("KPO_BENCH_RUN_SECONDS", "{}"))
FILLER = os.environ.get("KPO_BENCH_FILLER_SECONDS", "20")
POOL = "'''
    + POOL
    + """"

VARIANTS = (("classic", KubernetesPodOperator), ("finalizing", FinalizingKubernetesPodOperator))
START = datetime(2026, 1, 1)
for variant, operator in VARIANTS:
    for scenario in ("idle", "contention", "paused"):
        with DAG(f"bench_{variant}_{scenario}", schedule=None, start_date=START, catchup=False):
            for i in range(N):
                operator(
                    task_id=f"pod_{i:03d}",
                    name=f"{variant}-{scenario}-{i:03d}",
                    namespace="bench",
                    image="alpine:3.22",
                    cmds=["sh", "-c", "true"],
                    config_file=KUBECONFIG,
                    in_cluster=False,
                    deferrable=True,
                    do_xcom_push=True,
                    get_logs=False,
                    retries=0,
                    pool=POOL if scenario == "contention" else "default_pool",
                    priority_weight=1,
                    annotations={
                        "fake-kube/run-seconds": str(RUN.get(scenario, 5) + 0.3 * i),
                        "fake-kube/xcom": json.dumps({"variant": variant, "scenario": scenario, "i": i}),
                    },
                )

with DAG("bench_fillers", schedule=None, start_date=START, catchup=False):
    for i in range(N):
        BashOperator(
            task_id=f"filler_{i:03d}", bash_command=f"sleep {FILLER}", pool=POOL, priority_weight=100
        )
"""
)


class PodSampler:
    """When each pod's base container ended and when the pod disappeared.

    Stamped as the fake's store changes (its observers, on the fake's own thread), so a pod
    finalized within one poll of its end is still timed; the poll every ``interval`` s is the
    backup (and the only clock for a fake without a store). The first stamp wins.
    """

    def __init__(self, kube: Any, interval: float = 0.1) -> None:
        self.kube = kube
        self.interval = interval
        self.base_end: dict[tuple[str, ...], float] = {}  # key(meta) -> time.time()
        self.gone: dict[tuple[str, ...], float] = {}
        self._known: dict[str, tuple[str, ...]] = {}  # uid -> key(meta)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pod-sampler", daemon=True)
        self._store = getattr(getattr(kube, "cluster", None), "store", None)

    def key(self, meta: dict[str, Any]) -> tuple[str, ...]:
        """What a stamp is kept by: the task (``(dag_id, task_id)``); a Job's pods add their name."""
        labels = meta.get("labels") or {}
        return (labels.get("dag_id", ""), labels.get("task_id", ""))

    def __enter__(self) -> PodSampler:
        if self._store is not None:
            self._store.observers.append(self._observe)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.observers.remove(self._observe)
        self._stop.set()
        self._thread.join(5)

    def _observe(self, type_: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        meta = pod["metadata"]
        if meta.get("namespace") != NAMESPACE:
            return
        key = self.key(meta)
        now = time.time()
        if type_ == "DELETED":
            self.gone.setdefault(key, now)
        elif _base_ended(pod):
            self.base_end.setdefault(key, now)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.time()
            seen: set[str] = set()
            for pod in self.kube.list_pods(NAMESPACE):
                meta = pod["metadata"]
                key = self.key(meta)
                self._known[meta["uid"]] = key
                seen.add(meta["uid"])
                if _base_ended(pod):
                    self.base_end.setdefault(key, now)
            for uid, key in self._known.items():
                if uid not in seen:
                    self.gone.setdefault(key, now)


def _base_ended(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == "base" and "terminated" in (s.get("state") or {}) for s in statuses)


@contextmanager
def _world(
    tasks: int, run_seconds: dict[str, float], filler_seconds: float, keep: bool
) -> Iterator[dict[str, Any]]:
    from finalizer.demo.stack import AirflowStack, drop_database, free_port, fresh_postgres_url
    from finalizer.testing import FakeKube
    from finalizer.testing.airflow_env import AirflowEnv

    with ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="kpo-bench-e2e-"))
        if keep:
            stack.callback(print, f"kept {home}")
        else:
            stack.callback(shutil.rmtree, home, True)
        kube = stack.enter_context(FakeKube.in_thread())
        kube.auto_kubelet(True, start_delay=0.2)
        kubeconfig = kube.write_kubeconfig(home / "kubeconfig.json")
        db_url = fresh_postgres_url()
        if db_url is not None:
            stack.callback(drop_database, db_url)
        port = free_port()
        bench_env = {
            "KPO_BENCH_TASKS": str(tasks),
            "KPO_BENCH_KUBECONFIG": str(kubeconfig),
            "KPO_BENCH_RUN_SECONDS": json.dumps(run_seconds),
            "KPO_BENCH_FILLER_SECONDS": str(filler_seconds),
        }
        os.environ.update(bench_env)
        env = AirflowEnv.prepare(
            home / "airflow",
            db_url,
            execution_api_server_url=f"http://127.0.0.1:{port}/execution/",
            extra_env={
                **bench_env,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(2 * tasks + 4),
                # N workers parse the DAG file at once on a small machine: past the default 30 s a
                # task is rescheduled ("Dag not found during start up") and counted twice.
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__KPO_FINALIZER__STATE_DIR": str(home / "kpo-finalizer"),
                # The operators pass config_file (the triggers get it as config_dict); the default
                # connection must exist but must not name a config of its own (mutually exclusive).
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps({"conn_type": "kubernetes"}),
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            },
        )
        env.migrate()
        env.add_dag("bench_e2e.py", DAG_SOURCE)
        _unpause_all()
        _create_pool(tasks)
        processes_env = {**os.environ, **env.env, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
        airflow = AirflowStack(processes_env, env.home, port)
        stack.callback(airflow.stop)
        airflow.start()
        _wait_healthy(port, airflow)
        yield {
            "env": env,
            "kube": kube,
            "stack": airflow,
            "home": home,
            "db": "postgresql" if db_url else "sqlite",
        }


def _wait_healthy(port: int, airflow: Any, timeout: float = 180.0) -> None:
    """Until the api-server answers and reports scheduler, triggerer and dag-processor healthy."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"

    def healthy() -> bool:
        try:
            with opener.open(url, timeout=5) as response:
                body = json.loads(response.read())
        except OSError:
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((body.get(p) or {}).get("status") == "healthy" for p in parts)

    _wait("the Airflow components to report healthy", healthy, timeout, airflow)


def _unpause_all() -> None:
    """The bench's DAGs run unpaused, whatever this process's Airflow read at import.

    ``DagModel.is_paused`` takes its default from ``dags_are_paused_at_creation`` once, when
    ``airflow.models.dag`` is first imported: a process that imported it under another Airflow
    home (``bench chaos`` before ``bench e2e`` in one pytest run) writes new DAGs paused, and the
    scheduler then runs nothing.
    """
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagModel).values(is_paused=False))


def _create_pool(slots: int) -> None:
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(POOL, slots, "bench e2e: counts deferred tasks", include_deferred=True)


def _states(env: Any, dag_id: str, run_id: str) -> dict[str, tuple[str | None, Any]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state, TaskInstance.end_date, TaskInstance.id).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
            )
        ).all()
    return {str(r[0]): (None if r[1] is None else str(r[1]), (r[2], str(r[3]))) for r in rows}


def _wait(what: str, predicate: Any, timeout: float, stack: Any) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        stack.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def drive(
    world: dict[str, Any],
    dag_id: str,
    tasks: int,
    *,
    contended: bool,
    timeout: float,
    fillers: str = "bench_fillers",
) -> tuple[Any, dict[str, tuple[str | None, Any]]]:
    """Run ``dag_id`` until every task is terminal; its run and the tasks' states.

    ``contended``: once all ``tasks`` are deferred, the higher-priority ``fillers`` DAG queues for
    the pool.
    """
    env, stack = world["env"], world["stack"]
    run = env.create_run(dag_id)
    if contended:
        _wait(
            f"{dag_id}: every task deferred",
            lambda: sum(s == "deferred" for s, _ in _states(env, dag_id, run.run_id).values()) == tasks,
            timeout,
            stack,
        )
        env.create_run(fillers)
    _wait(
        f"{dag_id}: every task terminal",
        lambda: all(s in TERMINAL for s, _ in _states(env, dag_id, run.run_id).values()),
        timeout,
        stack,
    )
    time.sleep(0.5)  # one more sample: pods deleted at the very end
    return run, _states(env, dag_id, run.run_id)


def _run_variant(
    world: dict[str, Any], variant: str, scenario: str, tasks: int, timeout: float
) -> dict[str, Any]:
    env, stack, kube = world["env"], world["stack"], world["kube"]
    dag_id = f"bench_{variant}_{scenario}"
    with PodSampler(kube) as sampler:
        run, states = drive(world, dag_id, tasks, contended=scenario == "contention", timeout=timeout)
    scheduler_log = stack.processes["scheduler"].logs()
    rows = []
    for task_id, (state, (end_date, ti_id)) in sorted(states.items()):
        key = (dag_id, task_id)
        base_end = sampler.base_end.get(key)
        gone = sampler.gone.get(key)
        i = int(task_id.split("_")[1])
        try:
            xcom = env.get_xcom(dag_id, run.run_id, task_id, "return_value")
        except KeyError:
            xcom = None
        rows.append(
            {
                "task_id": task_id,
                "state": state,
                "latency": None if base_end is None or end_date is None else end_date.timestamp() - base_end,
                "pod_after_base_end": None if base_end is None or gone is None else gone - base_end,
                "pod_deleted": gone is not None,
                "times_queued": scheduler_log.count(f"(id={ti_id},"),
                "xcom_ok": xcom == {"variant": variant, "scenario": scenario, "i": i},
            }
        )
    if scenario == "contention":  # let the fillers drain before the next variant starts
        _wait("fillers to finish", lambda: _fillers_done(env), timeout, stack)
    latency = latency_summary([r["latency"] for r in rows if r["latency"] is not None])
    lifetime = latency_summary([r["pod_after_base_end"] for r in rows if r["pod_after_base_end"] is not None])
    return {
        "variant": variant,
        "scenario": scenario,
        "tasks": len(rows),
        "success": sum(r["state"] == "success" for r in rows),
        "xcom_correct": sum(r["xcom_ok"] for r in rows),
        "pods_deleted": sum(r["pod_deleted"] for r in rows),
        "latency_p50": latency["p50"],
        "latency_p95": latency["p95"],
        "latency_max": latency["max"],
        "pod_after_base_end_p50": lifetime["p50"],
        "pod_after_base_end_max": lifetime["max"],
        "times_queued_per_task": sum(r["times_queued"] for r in rows) / max(1, len(rows)),
        "rows": rows,
    }


def _fillers_done(env: Any, fillers: str = "bench_fillers") -> bool:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        running = session.scalar(
            select(func.count())
            .select_from(TaskInstance)
            .where(TaskInstance.dag_id == fillers, TaskInstance.state.not_in(list(TERMINAL)))
        )
    return not running


def run(
    tasks: int,
    scenarios: list[str],
    *,
    run_seconds: dict[str, float] | None = None,
    filler_seconds: float = 20.0,
    timeout: float = 300.0,
    keep: bool = False,
    variants: tuple[str, ...] = VARIANTS,
    paused_bound: float | None = None,
) -> dict[str, Any]:
    from finalizer.bench import e2e_jobs, e2e_paused

    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        raise ValueError(f"unknown scenario(s) {unknown or scenarios}; choose from {list(SCENARIOS)}")
    bad = sorted(set(variants) - set(VARIANTS))
    if bad or not variants:
        raise ValueError(f"unknown variant(s) {bad or list(variants)}; choose from {list(VARIANTS)}")
    run_seconds = {
        "idle": 5.0,
        "contention": 12.0,
        "paused": 15.0,
        "jobs": 5.0,
        "jobs-contention": 12.0,
        **(run_seconds or {}),
    }
    bound = e2e_paused.DEFAULT_BOUND if paused_bound is None else paused_bound
    results = []
    with _world(tasks, run_seconds, filler_seconds, keep) as world:
        if set(scenarios) & set(e2e_jobs.SCENARIOS):
            e2e_jobs.prepare(world)
        for scenario in scenarios:
            for variant in variants:
                print(f"running {scenario} / {variant} ({tasks} tasks)…", flush=True)
                if scenario == "paused":
                    results.append(e2e_paused.run_paused(world, variant, tasks, bound=bound, timeout=timeout))
                elif scenario in e2e_jobs.SCENARIOS:
                    results.append(
                        e2e_jobs.run_jobs(world, variant, scenario, tasks, timeout + filler_seconds)
                    )
                else:
                    results.append(_run_variant(world, variant, scenario, tasks, timeout + filler_seconds))
        db = world["db"]
    return {
        "tasks": tasks,
        "scenarios": scenarios,
        "run_seconds": run_seconds,
        "filler_seconds": filler_seconds,
        "paused_bound_s": bound if "paused" in scenarios else None,
        "metadata_db": db,
        "results": results,
    }


def render(result: dict[str, Any]) -> str:
    from finalizer.bench.e2e_jobs import SCENARIOS as JOBS
    from finalizer.bench.e2e_jobs_figures import render_jobs
    from finalizer.bench.e2e_paused import render_paused

    paused = [r for r in result["results"] if r["scenario"] == "paused"]
    jobs = [r for r in result["results"] if r["scenario"] in JOBS]
    others = [r for r in result["results"] if r["scenario"] != "paused" and r["scenario"] not in JOBS]
    tables = [_render_classic(others)] if others else []
    if paused:
        tables.append(render_paused(paused))
    if jobs:
        tables.append(render_jobs(jobs))
    return "\n\n".join(tables)


def _render_classic(results: list[dict[str, Any]]) -> str:
    rows = [
        (
            r["scenario"],
            r["variant"],
            f"{r['success']}/{r['tasks']}",
            f"{r['xcom_correct']}/{r['tasks']}",
            r["latency_p50"],
            r["latency_p95"],
            r["latency_max"],
            r["pod_after_base_end_p50"],
            r["pod_after_base_end_max"],
            r["times_queued_per_task"],
        )
        for r in results
    ]
    return render_table(
        (
            "scenario",
            "variant",
            "success",
            "XCom ok",
            "end→done p50 s",
            "p95 s",
            "max s",
            "pod after end p50 s",
            "max s",
            "queued/task",
        ),
        rows,
    )


def main(*, tasks: int, scenarios: list[str], json_path: str | None, keep: bool = False) -> int:
    from finalizer.bench.e2e_plot import plot

    result = run(tasks, scenarios, keep=keep)
    print(render(result))
    if json_path:
        payload = {"command": command_line(), "machine": machine(), **result}
        print(f"JSON written to {write_json(json_path, payload)}")
        png = Path(json_path).with_suffix(".png")
        if plot(result, png, command_line()):
            print(f"PNG written to {png}")
        else:
            print("PNG not written: matplotlib is not installed (pip install 'kpo-finalizer[bench]')")
    return 0 if all(_as_expected(r) for r in result["results"]) else 1


def _as_expected(result: dict[str, Any]) -> bool:
    """Every task succeeded with its XCom; the paused scenario judges its own (after the drain)."""
    if result["scenario"] == "paused":
        from finalizer.bench.e2e_paused import as_expected

        return as_expected(result)
    return bool(result["success"] == result["tasks"] and result["xcom_correct"] == result["tasks"])
