"""A triggerer SIGKILLed mid-finalization; a second triggerer takes over (PostgreSQL DB and ledger).

Pod deletes hang (injected latency) so every job is stuck after its XCom was pushed; the first
triggerer is then killed with SIGKILL. The second one gets the triggers once the first one's
heartbeat is older than the (short) health threshold, re-runs them, adopts the stale ledger jobs
and finishes them: every task ends exactly once, each XCom exists exactly once, no pod is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from finalizer.testing.airflow_env import AirflowEnv, TIInfo
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

TASKS = ("a", "b", "c", "d")
FINALIZER_ENV = {
    "AIRFLOW__KPO_FINALIZER__HEARTBEAT_INTERVAL": "1",
    "AIRFLOW__KPO_FINALIZER__STALE_THRESHOLD": "4",
    "AIRFLOW__KPO_FINALIZER__ADOPT_INTERVAL": "1",
}


@pytest.fixture(scope="module")
def metadata_db(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_af")


@pytest.fixture(scope="module")
def ledger_url(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_ledger")


@pytest.fixture(scope="module")
def extra_env(ledger_url: str) -> dict[str, str]:
    """Quick finalizer heartbeats and adoption, so the second triggerer takes over soon."""
    return e2e.finalizer_env(ledger_url, **FINALIZER_ENV)


@pytest.fixture
def clean_faults(fake_kube: FakeKube) -> Iterator[FakeKube]:
    yield fake_kube
    fake_kube.faults.clear()


def xcom_rows(ti: TIInfo) -> dict[str, int]:
    """How many XCom rows each key has for this TI (Airflow's own table)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.key, func.count())
            .where(
                XComModel.dag_id == ti.dag_id,
                XComModel.run_id == ti.run_id,
                XComModel.task_id == ti.task_id,
                XComModel.map_index == ti.map_index,
            )
            .group_by(XComModel.key)
        ).all()
        return {str(k): int(n) for k, n in rows}


def history_rows(ti: TIInfo) -> int:
    """Rows in task_instance_history: one per finished earlier try (none if the task ended once)."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    TaskInstanceHistory.dag_id == ti.dag_id,
                    TaskInstanceHistory.run_id == ti.run_id,
                    TaskInstanceHistory.task_id == ti.task_id,
                )
            )
            or 0
        )


def test_sigkill_mid_finalization_then_a_second_triggerer_finishes_everything_once(
    env: AirflowEnv, extra_env: dict[str, str], clean_faults: FakeKube, kubeconfig_path: Path
) -> None:
    kube = clean_faults
    first = TriggererProcess(env, extra_env=extra_env, name="triggerer-first")
    second = TriggererProcess(env, extra_env=extra_env, name="triggerer-second")
    env.activate()
    first.start()
    try:
        run = env.create_run(e2e.DAG_ID)
        tis: dict[str, TIInfo] = {}
        pods: dict[str, e2e.PodHandle] = {}

        async def defer_all() -> None:
            async with env.execution_api_app() as app:
                for task_id in TASKS:
                    pod = e2e.new_pod(kube, f"takeover-{task_id}")
                    kube.write_xcom(pod.namespace, pod.name, e2e.dumps({"task": task_id, "n": len(task_id)}))
                    ti = run.ti(task_id)
                    await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig_path, pod, task_id))
                    tis[task_id], pods[task_id] = ti, pod

        anyio.run(defer_all)
        # Every pod delete hangs: the jobs stop between "XCom pushed" and "pod cleaned".
        kube.faults.add("DELETE", r"/pods/", status=None, latency=300, times=None)
        for pod in pods.values():
            kube.terminate(pod.namespace, pod.name, exit_code=0)
        wait_for(
            lambda: all(xcom_rows(ti).get("return_value") == 1 for ti in tis.values()),
            120,
            what="every XCom pushed by the first triggerer",
        )
        assert {current_ti(ti).state for ti in tis.values()} == {"deferred"}, first.logs()[-3000:]
        first.kill()
        kube.faults.clear()
        # The pods are still there: the first triggerer died before deleting them.
        assert all(kube.get_pod(p.namespace, p.name) is not None for p in pods.values())

        second.start()
        wait_for(
            lambda: all(
                current_ti(ti).state not in ("deferred", "scheduled", "queued") for ti in tis.values()
            ),
            120,
            what="the second triggerer to end every task",
        )
        for task_id, ti in tis.items():
            final = current_ti(ti)
            detail = f"{task_id}:\n{trigger_logs(env, ti)[-3000:]}"
            assert final.state == "success", detail
            assert final.try_number == 1, detail
            assert history_rows(ti) == 0, detail
            assert e2e.xcom(env, ti) == {"task": task_id, "n": len(task_id)}
            rows = xcom_rows(ti)
            assert all(count == 1 for count in rows.values()), rows
            assert rows.get("return_value") == 1
        wait_for(
            lambda: all(kube.get_pod(p.namespace, p.name) is None for p in pods.values()),
            30,
            what="no pod left behind",
        )
    finally:
        first.kill()
        second.stop(timeout=30)
