"""A triggerer SIGKILLed mid-way through a Job (SQLite DB and ledger), issue 16.

One of the Job's three pods has been read, persisted and its sidecar stopped when the triggerer
dies; the other two end while no triggerer runs. The next triggerer takes the trigger over and its
finalizer resumes from the ledger: every pod's XCom is read exactly once, the list is whole and in
pod order, the task succeeds with no retry, and every pod is cleaned up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e
from tests.triggers import jobs_e2e as jobs

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.airflow]


@pytest.fixture(scope="module")
def env(env: AirflowEnv, kubeconfig_path: Path) -> Iterator[AirflowEnv]:
    yield from jobs.add_dag(env, kubeconfig_path)


def test_sigkill_mid_job_then_the_next_triggerer_finishes_it_with_nothing_lost_or_doubled(
    env: AirflowEnv, extra_env: dict[str, str], fake_kube: FakeKube
) -> None:
    first = TriggererProcess(env, extra_env=extra_env, name="triggerer-first")
    second = TriggererProcess(env, extra_env=extra_env, name="triggerer-second")
    env.activate()
    first.start()
    try:
        since = time.time()
        ti, job = jobs.defer_job(env, "restart")
        jobs.wait_followed(fake_kube, since)
        (early,) = jobs.finish_pods(fake_kube, job, count=1)
        # Read, persisted, then stopped: the stop comes after the ledger write.
        wait_for(lambda: jobs.stops(fake_kube, early) == 1, 90, what="the first pod's sidecar stopped")
        first.kill()
        assert current_ti(ti).state == "deferred"
        late = jobs.finish_pods(fake_kube, job)  # while no triggerer runs
        assert len(late) == 2
        names = sorted([early, *late])

        second.start()
        final = wait_for_ti_state(ti, {"success", "failed", "up_for_retry", "scheduled"}, timeout=180)
        assert final.state == "success", trigger_logs(env, ti)[-4000:]
        assert final.try_number == ti.try_number
        assert e2e.xcom(env, ti) == [jobs.payload(n) for n in names]
        pushed = e2e.xcom(env, ti, "job")
        assert pushed["status"]["succeeded"] == 3
        for name in names:  # nothing read twice, no sidecar left running
            assert jobs.reads(fake_kube, name) == 1, name
            assert jobs.stops(fake_kube, name) == 1, name
        wait_for(lambda: jobs.pod_names(fake_kube, job) == [], 60, what="every pod cleaned up")
    finally:
        first.kill()
        second.stop(timeout=30)
