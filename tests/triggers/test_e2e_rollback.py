"""Rollback with a real ``airflow triggerer``: ``[kpo_finalizer] enabled = false``.

The rule: new tasks take the classic path (the operator keeps the provider's
``KubernetesPodTrigger``, so nothing new depends on this package), while tasks already deferred
to ``FinalizingPodTrigger`` still finish in the triggerer. The triggerer here runs with
``enabled = false`` from its start (as after the rollback's restart); one task was deferred to
our trigger before the switch, one after. At the end nothing is in flight in the ledger
(``kpo-finalizer status``) and no ``FinalizingPodTrigger`` row remains in Airflow's trigger
table: the two conditions under which the README says the package can be removed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk.exceptions import TaskDeferred
from kubernetes.client import models as k8s

from finalizer.cli import main
from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from finalizer.testing.worker import run_like_worker
from tests.triggers import e2e
from triggers import airflow_db
from triggers.operator import FinalizingKubernetesPodOperator
from triggers.pod import CLASSPATH

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]

ENDED = {"scheduled", "success", "failed", "up_for_retry", "skipped"}
SWITCH = "AIRFLOW__KPO_FINALIZER__ENABLED"


@pytest.fixture(scope="module")
def extra_env(ledger_url: str) -> dict[str, str]:
    return e2e.finalizer_env(ledger_url, **{SWITCH: "false"})


@pytest.fixture
def worker_kubeconfig(kubeconfig_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The DAG file reads the kubeconfig path from the environment when the worker parses it."""
    monkeypatch.setenv("KPO_E2E_KUBECONFIG", str(kubeconfig_path))
    return kubeconfig_path


def _classic_trigger(kube_config_path: Path, pod: e2e.PodHandle, task_id: str) -> Any:
    """What a worker with ``enabled = false`` defers to: run the operator's own invoke_defer_method."""
    op = FinalizingKubernetesPodOperator(
        task_id=task_id,
        name=pod.name,
        namespace=pod.namespace,
        image="alpine:3",
        deferrable=True,
        do_xcom_push=True,
        kubernetes_conn_id=None,
        config_file=str(kube_config_path),
    )
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=pod.name, namespace=pod.namespace, uid=pod.uid))
    with pytest.raises(TaskDeferred) as info:
        op.invoke_defer_method()
    return info.value.trigger


def _our_trigger_rows() -> int:
    """``SELECT count(*) FROM trigger WHERE classpath = 'triggers.pod.FinalizingPodTrigger'``."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(session.scalar(select(func.count()).where(Trigger.classpath == CLASSPATH)) or 0)


@pytest.mark.anyio
async def test_enabled_false_new_tasks_go_classic_deferred_ones_finish_in_the_triggerer(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    app: Any,
    fake_kube: FakeKube,
    worker_kubeconfig: Path,
    ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Deferred before the switch: the worker still had enabled = true (unset).
    monkeypatch.delenv(SWITCH, raising=False)
    before = e2e.new_pod(fake_kube, "rollback-before")
    fake_kube.write_xcom(e2e.NAMESPACE, before.name, '{"before": 1}')
    before_ti = env.create_run(e2e.DAG_ID).ti("a")
    started = time.time()
    await e2e.defer(env, app, before_ti, e2e.build_trigger(worker_kubeconfig, before, "a"))
    assert _our_trigger_rows() == 1
    assert airflow_db.CLASSPATH == CLASSPATH  # what status --airflow-db counts

    # Deferred after: the worker reads enabled = false and keeps the provider's trigger.
    monkeypatch.setenv(SWITCH, "false")
    after = e2e.new_pod(fake_kube, "rollback-after")
    fake_kube.write_xcom(e2e.NAMESPACE, after.name, '{"after": 2}')
    after_ti = env.create_run(e2e.DAG_ID).ti("no_retry")
    trigger = _classic_trigger(worker_kubeconfig, after, "no_retry")
    assert type(trigger) is KubernetesPodTrigger
    await e2e.defer(env, app, after_ti, trigger)
    assert _our_trigger_rows() == 1
    # Once the finalizer follows the first pod (its ledger exists), status counts our one row.
    wait_for(
        lambda: e2e.followed_since(fake_kube, before, started), 60, 0.1, "the finalizer to watch the pod"
    )
    capsys.readouterr()
    argv = ["status", "--ledger-url", ledger_url, "--airflow-db"]
    assert await anyio.to_thread.run_sync(main, argv) == 0
    out = capsys.readouterr().out
    assert "kpo-finalizer trigger rows in Airflow's trigger table: 1\n" in out
    assert "1 in flight" in out

    fake_kube.terminate(e2e.NAMESPACE, before.name, exit_code=0)
    fake_kube.terminate(e2e.NAMESPACE, after.name, exit_code=0)

    # Ours ends in the triggerer although the triggerer has enabled = false: no worker.
    final = wait_for_ti_state(before_ti, ENDED, timeout=90)
    assert final.state == "success", trigger_logs(env, before_ti)[-3000:]
    assert e2e.xcom(env, before_ti) == {"before": 1}
    wait_for(
        lambda: fake_kube.get_pod(e2e.NAMESPACE, before.name) is None,
        30,
        what="the finalizer deletes the pod",
    )

    # The classic one goes back to the scheduler; a worker finishes it (XCom, pod deleted).
    handed = wait_for_ti_state(after_ti, ENDED, timeout=90)
    assert handed.state == "scheduled", triggerer.logs()[-3000:]
    assert "kpo-finalizer" not in trigger_logs(env, after_ti)
    run_like_worker(env, after_ti)
    assert wait_for_ti_state(after_ti, {"success", "failed"}, timeout=30).state == "success"
    assert e2e.xcom(env, after_ti) == {"after": 2}

    # Safe to remove the package: nothing in flight, no FinalizingPodTrigger row left.
    wait_for(lambda: _our_trigger_rows() == 0, 60, 0.5, "Airflow to clean the used trigger row up")
    capsys.readouterr()
    argv = ["status", "--ledger-url", ledger_url, "--json", "--airflow-db"]
    assert await anyio.to_thread.run_sync(main, argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["in_flight"] == 0
    assert report["finalizing_triggers"] == 0, report["finalizing_triggers_error"]
    # A valid [kpo_finalizer] (enabled = false included) raises no configuration problem.
    assert "kpo-finalizer configuration problem" not in triggerer.logs()
    assert {(c["step"], c["outcome"]): c["count"] for c in report["jobs"]} == {("DONE", "success"): 1}
