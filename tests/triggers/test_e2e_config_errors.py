"""A real ``airflow triggerer`` with a bad and a misspelt ``[kpo_finalizer]`` option says so, loudly, once.

The bad values (``concurrency_per_cluster = -4``, ``xcom_max_bytes = 1MB``) make every task take
the classic path; the misspelt option is never read. Both used to show only as one line in each
task's log. Now the triggerer's own log carries each problem at ERROR, once, when the first
trigger starts (two tasks are deferred: still once), and each task still ends the classic way
(back to the scheduler for a worker), losing nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]

PROBLEM = "kpo-finalizer configuration problem:"


@pytest.fixture(scope="module")
def extra_env(ledger_url: str) -> dict[str, str]:
    return e2e.finalizer_env(
        ledger_url,
        AIRFLOW__KPO_FINALIZER__CONCURRENCY_PER_CLUSTER="-4",
        AIRFLOW__KPO_FINALIZER__XCOM_MAX_BYTES="1MB",
        AIRFLOW__KPO_FINALIZER__CONCURENCY_PER_CLUSTR="8",
    )


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if PROBLEM in line]


@pytest.mark.anyio
async def test_bad_and_misspelt_options_are_logged_once_at_error_in_the_triggerer_log(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, kubeconfig_path: Path
) -> None:
    tis = []
    for task_id in ("a", "b"):
        pod = e2e.new_pod(fake_kube, f"cfg-{task_id}")
        ti = env.create_run(e2e.DAG_ID).ti(task_id)
        await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig_path, pod, task_id))
        tis.append((ti, pod))

    lines = wait_for(
        lambda: (found := _error_lines(triggerer.logs())) and len(found) >= 3 and found,
        90,
        0.2,
        "the configuration problems in the triggerer's log",
    )
    for line in lines:
        assert "[error" in line.split(PROBLEM)[0], line  # the record's level: ERROR
    joined = "\n".join(lines)
    assert "concurrency_per_cluster='-4'" in joined
    assert "xcom_max_bytes='1MB'" in joined
    assert "unknown option 'concurency_per_clustr'" in joined
    assert "did you mean 'concurrency_per_cluster'" in joined

    # Each task still ends the classic way, and the problems stay in the triggerer's log only.
    for _, pod in tis:
        fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    for ti, _ in tis:
        final = wait_for_ti_state(ti, {"scheduled", "success", "failed"}, timeout=90)
        assert final.state == "scheduled", trigger_logs(env, ti)[-3000:]
        task_log = trigger_logs(env, ti)
        assert "classic path" in task_log
        assert PROBLEM not in task_log
    # Once per process, although two triggers started.
    assert len(_error_lines(triggerer.logs())) == 3
