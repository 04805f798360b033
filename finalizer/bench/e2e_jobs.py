"""``bench e2e --scenarios jobs,jobs-contention``: Kubernetes Jobs, classic against finalizing.

The same real Airflow and fake cluster as ``bench e2e`` (the fake's batch/v1 Jobs and job
controller); per variant, N ``KubernetesJobOperator`` tasks (``deferrable=True``,
``wait_until_job_complete=True``), every other one with ``parallelism`` 3 (``completions`` 3),
each pod with the XCom sidecar:

* classic: the provider's own operator; ``KubernetesJobTrigger`` polls each pod's base container
  (10 s, not configurable) and the Job (``job_poll_interval``), then a worker runs
  ``execute_complete`` (pushes, pod cleanup);
* finalizing: ``FinalizingKubernetesJobOperator``, finished in the triggerer.

``jobs-contention`` runs the tasks in the pool the fillers queue for, as ``contention`` does.
Per task: last base-container end → task terminal, each pod's lifetime after its base container
ended, worker runs (times the scheduler queued it) and whether ``return_value`` is the list the
pods wrote (unwrapped for one pod) and ``job`` a completed Job. Figures in ``e2e_jobs_figures``.
"""

from __future__ import annotations

import json
from typing import Any

from finalizer.bench import e2e
from finalizer.bench.e2e_jobs_figures import expected_xcom, job_completed, summarize

SCENARIOS = ("jobs", "jobs-contention")
#: The connection both variants name: ``KubernetesJobTrigger``'s async hook ignores ``config_file``
#: and reads only the connection's ``kube_config_path``.
CONNECTION = "kpo_bench_kube"
#: The provider's default ``job_poll_interval`` (seconds), as a user who sets nothing gets it.
JOB_POLL_INTERVAL = 10.0
#: ``jobs-contention``'s fillers: longer than ``contention``'s 20 s, because the classic Job trigger
#: fires 10-30 s after deferring (10 s polls of each pod, then of the Job): 20 s fillers were done
#: by then and contended nothing.
FILLERS = "bench_job_fillers"
FILLER_SECONDS = 60.0

FILLERS_SOURCE = f'''
"""bench e2e jobs-contention: higher-priority tasks queued for the Job tasks' pool."""
import os
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG("{FILLERS}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for i in range(int(os.environ.get("KPO_BENCH_TASKS", "1"))):
        BashOperator(
            task_id=f"filler_{{i:03d}}", bash_command="sleep {FILLER_SECONDS:g}", pool="{e2e.POOL}",
            priority_weight=100,
        )
'''

#: Each variant's operator. One DAG file per variant: a worker parses only its own DAG's file, and
#: the classic one then imports nothing of ours (N workers parsing at once on 2 cores is slow).
OPERATORS = {
    "classic": ("airflow.providers.cncf.kubernetes.operators.job", "KubernetesJobOperator"),
    "finalizing": ("triggers.job_operator", "FinalizingKubernetesJobOperator"),
}

DAG_SOURCE = '''
"""bench e2e jobs, @VARIANT@: the same scripted Jobs as the other variant's file."""
import json
import os
from datetime import datetime

from airflow.sdk import DAG

from @MODULE@ import @CLASS@ as operator

N = int(os.environ.get("KPO_BENCH_TASKS", "1"))
RUN = json.loads(os.environ.get("KPO_BENCH_RUN_SECONDS", "{}"))
POLL = @POLL@
variant = "@VARIANT@"
START = datetime(2026, 1, 1)
for scenario in ("jobs", "jobs-contention"):
    dag_id = f"bench_{variant}_{scenario.replace('-', '_')}"
    with DAG(dag_id, schedule=None, start_date=START, catchup=False):
        for i in range(N):
            parallelism = 1 if i % 2 == 0 else 3
            operator(
                task_id=f"job_{i:03d}",
                name=f"{variant[:3]}-{scenario}-{i:03d}",
                namespace="bench",
                image="alpine:3.22",
                cmds=["sh", "-c", "true"],
                kubernetes_conn_id="@CONNECTION@",
                in_cluster=False,
                deferrable=True,
                wait_until_job_complete=True,
                job_poll_interval=POLL,
                parallelism=parallelism,
                completions=parallelism,
                backoff_limit=0,
                do_xcom_push=True,
                get_logs=False,
                retries=0,
                pool="@POOL@" if scenario == "jobs-contention" else "default_pool",
                priority_weight=1,
                annotations={
                    "fake-kube/run-seconds": str(RUN.get(scenario, 5) + 0.3 * i),
                    "fake-kube/xcom": json.dumps({"variant": variant, "scenario": scenario, "i": i}),
                },
            )
'''.replace("@CONNECTION@", CONNECTION).replace("@POOL@", e2e.POOL)


def dag_source(variant: str, job_poll_interval: float = JOB_POLL_INTERVAL) -> str:
    """The DAG file of one variant (both of its scenarios); values written in, as the processes
    that parse it started before it was written."""
    module, name = OPERATORS[variant]
    source = DAG_SOURCE.replace("@VARIANT@", variant).replace("@MODULE@", module).replace("@CLASS@", name)
    return source.replace("@POLL@", repr(float(job_poll_interval)))


def dag_id(variant: str, scenario: str) -> str:
    return f"bench_{variant}_{scenario.replace('-', '_')}"


class JobPodSampler(e2e.PodSampler):
    """``PodSampler`` stamping each pod of a Job apart: ``(dag_id, task_id, pod name)``."""

    def key(self, meta: dict[str, Any]) -> tuple[str, ...]:
        return (*super().key(meta), str(meta.get("name", "")))


def prepare(world: dict[str, Any], job_poll_interval: float = JOB_POLL_INTERVAL) -> None:
    """Add the Job DAGs and the connection to the running world (once, before any Jobs scenario).

    The connection goes to the metadata DB: the worker and the triggerer resolve it from there.
    """
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    world["job_poll_interval"] = job_poll_interval
    kubeconfig = world["home"] / "kubeconfig.json"
    with create_session() as session:
        session.add(
            Connection(
                conn_id=CONNECTION,
                conn_type="kubernetes",
                extra=json.dumps({"kube_config_path": str(kubeconfig)}),
            )
        )
    for variant in OPERATORS:
        world["env"].add_dag(f"bench_e2e_jobs_{variant}.py", dag_source(variant, job_poll_interval))
    world["env"].add_dag("bench_e2e_job_fillers.py", FILLERS_SOURCE)
    e2e._unpause_all()


def run_jobs(
    world: dict[str, Any], variant: str, scenario: str, tasks: int, timeout: float
) -> dict[str, Any]:
    """One variant of a Jobs scenario: drive its DAG run, then one row per task and the figures."""
    env, stack, kube = world["env"], world["stack"], world["kube"]
    dag = dag_id(variant, scenario)
    contended = scenario == "jobs-contention"
    with JobPodSampler(kube) as sampler:
        run, states = e2e.drive(
            world, dag, tasks, contended=contended, timeout=timeout + FILLER_SECONDS, fillers=FILLERS
        )
    scheduler_log = stack.processes["scheduler"].logs()
    rows = []
    for task_id, (state, (end_date, ti_id)) in sorted(states.items()):
        i = int(task_id.split("_")[1])
        parallelism = 1 if i % 2 == 0 else 3
        ends = {k[2]: t for k, t in sampler.base_end.items() if k[:2] == (dag, task_id)}
        gone = {k[2]: t for k, t in sampler.gone.items() if k[:2] == (dag, task_id)}
        lifetimes = [gone[p] - t for p, t in sorted(ends.items()) if p in gone]
        rows.append(
            {
                "task_id": task_id,
                "parallelism": parallelism,
                "state": state,
                "pods": len(ends.keys() | gone.keys()),
                "latency": (
                    end_date.timestamp() - max(ends.values()) if ends and end_date is not None else None
                ),
                "pod_lifetimes": lifetimes,
                "pod_after_base_end": max(lifetimes) if lifetimes else None,
                "pod_deleted": bool(ends) and len(lifetimes) == len(ends),
                "times_queued": scheduler_log.count(f"(id={ti_id},"),
                "xcom_ok": _xcom(env, dag, run.run_id, task_id, "return_value")
                == expected_xcom(variant, scenario, i, parallelism),
                "job_ok": job_completed(_xcom(env, dag, run.run_id, task_id, "job"), parallelism),
            }
        )
    if contended:  # let the fillers drain before the next variant starts
        e2e._wait("fillers to finish", lambda: e2e._fillers_done(env, FILLERS), timeout, stack)
    return {
        "variant": variant,
        "scenario": scenario,
        "job_poll_interval_s": world.get("job_poll_interval"),
        "filler_seconds": FILLER_SECONDS if contended else None,
        **summarize(rows),
        "rows": rows,
    }


def _xcom(env: Any, dag: str, run_id: str, task_id: str, key: str) -> Any:
    try:
        return env.get_xcom(dag, run_id, task_id, key)
    except KeyError:
        return None
