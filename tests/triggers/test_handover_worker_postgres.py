"""A task handed to the worker during a ledger outage is the worker's alone (issue 13, weakness 3).

Real parts: two ``airflow triggerer`` processes on a PostgreSQL metadata DB, a PostgreSQL ledger
behind ``finalizer.testing.tcp_proxy``, the fake Kubernetes API (its request log tells the
triggerer's kubernetes_asyncio from the worker's kubernetes client), and a real worker
(``run_like_worker``: the Task SDK supervisor and task process) resuming the task.

1. The ledger refuses past ``ledger_deadline``: the first triggerer's finalizer goes down, the
   waiting trigger takes the classic path and its pod ends: the task goes back to SCHEDULED.
   Its hand-over mark cannot reach the ledger; the triggerer is then SIGKILLed (the pending mark
   dies with it), so the ledger still shows the job owned by a dead instance: adoptable.
2. The ledger is back; a second triggerer's finalizer starts (another task's trigger starts it)
   and finds the stale job. It asks Airflow first: the task is not DEFERRED, so it marks the job
   handed over and never touches the pod.
3. The worker resumes the task (``trigger_reentry``): it reads the XCom from the sidecar and
   deletes the pod. No finalizer read, stopped, labelled or deleted that pod at any time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg2  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from kubernetes import client as sync_client

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.tcp_proxy import ThreadedTcpProxy
from finalizer.testing.triggerer_process import TriggererProcess
from finalizer.testing.worker import run_like_worker
from tests.triggers import e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

FINALIZER_ENV = {
    "AIRFLOW__KPO_FINALIZER__LEDGER_DEADLINE": "3",
    "AIRFLOW__KPO_FINALIZER__HEARTBEAT_INTERVAL": "0.5",
    "AIRFLOW__KPO_FINALIZER__STALE_THRESHOLD": "3",
    "AIRFLOW__KPO_FINALIZER__ADOPT_INTERVAL": "0.5",
    "AIRFLOW__KPO_FINALIZER__CALL_TIMEOUT": "2",
}
#: Verbs that act on a pod (anything but looking at it).
ACTING = {"exec", "delete", "patch", "create"}


@pytest.fixture(scope="module")
def metadata_db(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_af_handover")


@pytest.fixture(scope="module")
def ledger_db(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_ledger_handover")


@pytest.fixture(scope="module")
def proxy(ledger_db: str) -> Iterator[ThreadedTcpProxy]:
    url = sa.make_url(ledger_db)
    with ThreadedTcpProxy(url.host or "127.0.0.1", url.port or 5432) as opened:
        yield opened


@pytest.fixture(scope="module")
def extra_env(ledger_db: str, proxy: ThreadedTcpProxy) -> dict[str, str]:
    through = sa.make_url(ledger_db).set(host=proxy.host, port=proxy.port)
    return e2e.finalizer_env(through.render_as_string(hide_password=False), **FINALIZER_ENV)


@pytest.fixture
def worker_kubeconfig(kubeconfig_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The DAG file reads the kubeconfig path from the environment when the worker parses it."""
    monkeypatch.setenv("KPO_E2E_KUBECONFIG", str(kubeconfig_path))
    return kubeconfig_path


def _job(ledger_db: str, pod_uid: str) -> dict[str, Any] | None:
    conn = psycopg2.connect(ledger_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('kpof_jobs') IS NOT NULL")
            row = cur.fetchone()
            if not (row and row[0]):
                return None  # the finalizer has not migrated the ledger yet
            cur.execute(
                "SELECT owner, step, handed_over_at, error FROM kpof_jobs WHERE pod_uid = %s", (pod_uid,)
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    return {"owner": row[0], "step": row[1], "handed_over_at": row[2], "error": row[3]}


def _defer(env: AirflowEnv, ti: Any, kubeconfig: Path, pod: e2e.PodHandle, task_id: str) -> None:
    async def main() -> None:
        async with env.execution_api_app() as app:
            await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig, pod, task_id))

    anyio.run(main)


def test_a_task_handed_to_the_worker_in_an_outage_is_never_touched_by_a_finalizer(
    env: AirflowEnv,
    extra_env: dict[str, str],
    fake_kube: FakeKube,
    worker_kubeconfig: Path,
    proxy: ThreadedTcpProxy,
    ledger_db: str,
) -> None:
    kube = fake_kube
    worker_agents = frozenset({str(sync_client.ApiClient().user_agent), ""})
    first = TriggererProcess(env, extra_env=extra_env, name="triggerer-handover-1")
    second = TriggererProcess(env, extra_env=extra_env, name="triggerer-handover-2")
    env.activate()
    first.start()
    try:
        run = env.create_run(e2e.DAG_ID)
        ti = run.ti("a")
        pod = e2e.new_pod(kube, "handover-a")
        kube.write_xcom(pod.namespace, pod.name, e2e.dumps({"by": "worker"}))
        _defer(env, ti, worker_kubeconfig, pod, "a")
        wait_for(lambda: _job(ledger_db, pod.uid) is not None, 90, 0.2, "the job in the ledger")

        # 1. The outage: the finalizer goes down, the trigger goes classic, the pod ends.
        proxy.set_mode("refuse")
        wait_for(lambda: "kpo-finalizer is DOWN" in first.logs(), 60, 0.2, "the finalizer to go down")
        kube.terminate(pod.namespace, pod.name, exit_code=0)
        handed = wait_for_ti_state(ti, {"scheduled", "success", "failed"}, timeout=90)
        assert handed.state == "scheduled", trigger_logs(env, ti)[-3000:]
        assert "handing the task to the worker" in trigger_logs(env, ti)
        first.kill()  # the pending hand-over dies with the process
        job = _job(ledger_db, pod.uid)
        assert job is not None
        assert job["handed_over_at"] is None  # the mark never reached the ledger: adoptable
        assert job["owner"] is not None

        # 2. The ledger is back; a second triggerer's finalizer (started by another task) adopts.
        proxy.set_mode("pass")
        second.start()
        other = e2e.new_pod(kube, "handover-b")
        kube.write_xcom(other.namespace, other.name, e2e.dumps({"by": "finalizer"}))
        other_ti = run.ti("b")
        _defer(env, other_ti, worker_kubeconfig, other, "b")
        wait_for(
            lambda: (_job(ledger_db, pod.uid) or {}).get("handed_over_at") is not None,
            90,
            0.2,
            "the adopter to leave the worker's job, marked handed over",
        )
        job = _job(ledger_db, pod.uid)
        assert job is not None
        assert "scheduled, not DEFERRED" in str(job["error"])
        kube.terminate(other.namespace, other.name, exit_code=0)
        assert wait_for_ti_state(other_ti, {"success", "failed"}, timeout=90).state == "success"

        # 3. The worker resumes the task: it alone reads the XCom and deletes the pod.
        assert kube.get_pod(pod.namespace, pod.name) is not None
        run_like_worker(env, ti)
        final = wait_for_ti_state(ti, {"success", "failed"}, timeout=60)
        assert final.state == "success", trigger_logs(env, ti)[-3000:]
        assert e2e.xcom(env, ti) == {"by": "worker"}
        assert current_ti(ti).try_number == handed.try_number
        on_pod = [r for r in kube.requests if r.namespace == pod.namespace and r.name == pod.name]
        by_finalizers = [r for r in on_pod if r.user_agent not in worker_agents and r.verb in ACTING]
        assert by_finalizers == [], by_finalizers
        deletes = [r for r in on_pod if r.verb == "delete"]
        assert len(deletes) == 1
        assert deletes[0].user_agent in worker_agents
        assert any(r.verb == "exec" and r.user_agent in worker_agents for r in on_pod)  # the worker's read
        assert "kpo-finalizer is UP" not in first.logs()  # it was killed while down
    finally:
        proxy.set_mode("pass")
        first.kill()
        second.stop(timeout=30)
