"""A triggerer restart while ``logging_interval``'s follow stream runs, with real `airflow triggerer`s.

The first triggerer shows the log live, then shuts down (SIGTERM): its finalizer drains while
the follow stream is open. The drain must not hang on the stream, must park the job (pod and
sidecar untouched, task still DEFERRED), and the next triggerer finishes the task. The re-run
writes the whole log again, so a line shown before the restart shows twice in the task log and a
line written after it once: what the README's "How it differs" section says.
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

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.anyio]

#: A graceful shutdown well inside TriggererProcess.stop's 60 s (past it, the process is killed).
SHUTDOWN_BOUND = 45.0


def sidecar_stops(kube: FakeKube, pod: e2e.PodHandle) -> int:
    return sum("pgrep" in c.text for c in kube.exec_commands(pod.namespace, pod.name))


async def test_a_restart_during_a_log_follow_parks_the_job_and_the_next_triggerer_finishes(
    env: AirflowEnv, extra_env: dict[str, str], app: Any, fake_kube: FakeKube, kubeconfig_path: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "follow-restart")
    fake_kube.write_xcom(pod.namespace, pod.name, '{"followed": "restart"}')
    fake_kube.set_logs(pod.namespace, pod.name, "base", ["before restart"])
    ti = env.create_run(e2e.DAG_ID).ti("b")
    trigger = e2e.build_trigger(kubeconfig_path, pod, "b", logging_interval=5)
    with TriggererProcess(env, extra_env=extra_env, name="triggerer-following") as first:
        await e2e.defer(env, app, ti, trigger)
        wait_for(lambda: "[base] before restart" in trigger_logs(env, ti), 90, what="the live line")
        assert fake_kube.get_pod(pod.namespace, pod.name)["status"]["phase"] == "Running"  # type: ignore[index]
        started = time.monotonic()
        first.stop()  # SIGTERM while the follow stream is open
        took = time.monotonic() - started
        own = first.logs()
    assert took < SHUTDOWN_BOUND, f"the shutdown took {took:.1f}s: the drain waited on the stream"
    assert "kpo-finalizer drained" in own
    assert current_ti(ti).state == "deferred"
    assert fake_kube.get_pod(pod.namespace, pod.name) is not None, "a restart must not delete the pod"
    assert sidecar_stops(fake_kube, pod) == 0, "a restart must not stop the sidecar"

    with TriggererProcess(env, extra_env=extra_env, name="triggerer-finishing"):
        fake_kube.append_logs(pod.namespace, pod.name, "base", ["after restart"])
        fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
        final = wait_for_ti_state(ti, {"success", "failed", "up_for_retry", "scheduled"}, timeout=90)
        assert final.state == "success", trigger_logs(env, ti)[-3000:]
        assert e2e.xcom(env, ti) == {"followed": "restart"}
    wait_for(lambda: fake_kube.get_pod(pod.namespace, pod.name) is None, 30, what="the pod deleted")
    text = trigger_logs(env, ti)  # both triggerers' files
    assert text.count("[base] before restart") == 2, text[-3000:]  # the re-run wrote it again
    assert text.count("[base] after restart") == 1
    assert text.index("[base] after restart") < text.index("kpo-finalizer: task succeeded")
    assert sidecar_stops(fake_kube, pod) == 1
