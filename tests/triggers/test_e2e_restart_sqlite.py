"""Restart is not kill, through real `airflow triggerer` processes (SQLite).

A triggerer shutdown (SIGTERM) cancels its triggers, but the pod stays, and the next triggerer
finishes the task. (A user action — mark failed — deleting the pod is in ``test_e2e_sqlite.py``.)

Each triggerer here is fresh, so its first trigger starts the supervisor-channel warm-up
(``triggers.warmup``): the first one shows it ran while the pod was still running.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]


@pytest.mark.anyio
async def test_triggerer_shutdown_keeps_the_pod_and_the_next_triggerer_finishes(
    env: AirflowEnv, extra_env: dict[str, str], app: Any, fake_kube: FakeKube, kubeconfig_path: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "restart")
    fake_kube.write_xcom(pod.namespace, pod.name, '{"survived": "restart"}')
    ti = env.create_run(e2e.DAG_ID).ti("b")
    with TriggererProcess(env, extra_env=extra_env, name="triggerer-before") as first:
        deferred = time.time()
        await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig_path, pod, "b"))
        wait_for(
            lambda: e2e.followed_since(fake_kube, pod, deferred), 60, what="the finalizer to watch the pod"
        )
        # The warm-up: the supervisor answered the probe (the DAG run's state) and the runner saw
        # the answer, while no pod had ended; and it logged no error for it. A process-wide line:
        # in the triggerer's own log, not the task's.
        wait_for(lambda: "supervisor channel warm after" in first.logs(), 90, what="the warm-up to end")
        assert "gave up" not in first.logs()
        assert "XCom not found" not in first.logs()
        running = fake_kube.get_pod(pod.namespace, pod.name)
        assert running is not None
        assert running["status"]["phase"] == "Running", "the warm-up must not wait for a pod to end"
    assert first.is_running() is False
    assert current_ti(ti).state == "deferred"
    assert fake_kube.get_pod(pod.namespace, pod.name) is not None, "shutdown must not delete the pod"
    assert "deleting pod" not in trigger_logs(env, ti)

    with TriggererProcess(env, extra_env=extra_env, name="triggerer-after"):
        fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
        final = wait_for_ti_state(ti, {"success", "failed", "up_for_retry", "scheduled"}, timeout=90)
        assert final.state == "success", trigger_logs(env, ti)[-3000:]
        assert e2e.xcom(env, ti) == {"survived": "restart"}
    wait_for(lambda: fake_kube.get_pod(pod.namespace, pod.name) is None, 30, what="pod deleted")
