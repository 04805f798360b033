"""The paths that end in a worker, finished by a real worker run of ``trigger_reentry`` (SQLite).

A real `airflow triggerer` runs the trigger; the task then goes back to SCHEDULED with the event
as ``next_kwargs``, and ``run_like_worker`` runs it with the real Task SDK supervisor and task
process (the DAG file parsed again, ``trigger_reentry`` called), as a worker would.

- finalization disabled: the classic event; the provider's own ``trigger_reentry`` reads the XCom
  from the sidecar and deletes the pod.
- fail-fast (exit code configured as deterministic): the finalizer already deleted the pod;
  the worker fails the task without retry although ``retries=1``.
- ``fallback_to_worker``: the finalizer did the work; the worker only ends the task, and the XCom
  pushed by the finalizer stays (the worker does not overwrite it).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.triggerer import (
    TriggererProcess,
    current_ti,
    run_like_worker,
    trigger_logs,
    wait_for,
    wait_for_ti_state,
)
from tests.triggers import e2e

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

ENDED = {"scheduled", "success", "failed", "up_for_retry", "skipped"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    return e2e.prepare_env(tmp_path_factory.mktemp("airflow-worker"), None)


@pytest.fixture(scope="module")
def triggerer(env: AirflowEnv) -> Iterator[TriggererProcess]:
    env.activate()
    ledger = f"sqlite:///{env.home / 'ledger.sqlite3'}"
    with TriggererProcess(env, extra_env=e2e.finalizer_env(ledger)) as proc:
        yield proc


@pytest.fixture
async def app(env: AirflowEnv) -> AsyncIterator[Any]:
    env.activate()
    async with env.execution_api_app() as application:
        yield application


@pytest.fixture
def worker_kubeconfig(kubeconfig_path: Path) -> Iterator[Path]:
    """The DAG file reads the kubeconfig path from the environment when the worker parses it."""
    os.environ["KPO_E2E_KUBECONFIG"] = str(kubeconfig_path)
    yield kubeconfig_path
    os.environ.pop("KPO_E2E_KUBECONFIG", None)


@pytest.mark.anyio
async def test_disabled_finalization_goes_classic_and_the_worker_finishes(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, worker_kubeconfig: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "classic-1")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, '{"a": 1}')
    trigger = e2e.build_trigger(worker_kubeconfig, pod, "no_retry", finalization={"enabled": False})
    ti = env.create_run(e2e.DAG_ID).ti("no_retry")
    await e2e.defer(env, app, ti, trigger)
    assert current_ti(ti).state == "deferred"
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, ENDED, timeout=60)
    # Back to the scheduler for a worker; the pod and its XCom are left to that worker.
    assert final.state == "scheduled", triggerer.logs()[-3000:]
    assert "finalization is disabled" in trigger_logs(env, ti)
    assert fake_kube.get_pod(e2e.NAMESPACE, pod.name) is not None
    assert not e2e.has_xcom(env, ti)

    run_like_worker(env, ti)
    assert current_ti(ti).state == "success"
    assert e2e.xcom(env, ti) == {"a": 1}
    wait_for(lambda: fake_kube.get_pod(e2e.NAMESPACE, pod.name) is None, 30, what="worker deletes the pod")


@pytest.mark.anyio
async def test_fail_fast_exit_code_fails_without_retry_through_the_worker(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, worker_kubeconfig: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "fail-fast")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, '{"partial": 1}')
    trigger = e2e.build_trigger(
        worker_kubeconfig, pod, "fail_fast", finalization={"fail_fast_exit_codes": [3]}
    )
    ti = env.create_run(e2e.DAG_ID).ti("fail_fast")  # retries=1 in the DAG
    await e2e.defer(env, app, ti, trigger)
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=3, message="config error")
    final = wait_for_ti_state(ti, ENDED, timeout=90)
    assert final.state == "scheduled", trigger_logs(env, ti)[-3000:]
    log = trigger_logs(env, ti)
    assert "deterministic failure" in log
    # The finalizer already did the pod's work (the pipeline pushes XCom only for successes).
    wait_for(lambda: fake_kube.get_pod(e2e.NAMESPACE, pod.name) is None, 30, what="finalizer deletes the pod")

    run_like_worker(env, ti)
    after = current_ti(ti)
    assert after.state == "failed"  # not up_for_retry, although retries=1
    assert after.try_number == final.try_number


@pytest.mark.anyio
async def test_fallback_to_worker_ends_the_task_in_the_worker_and_keeps_the_xcom(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, worker_kubeconfig: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "to-worker")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, "[1, 2, 3]")
    trigger = e2e.build_trigger(worker_kubeconfig, pod, "c", finalization={"fallback_to_worker": True})
    ti = env.create_run(e2e.DAG_ID).ti("c")
    await e2e.defer(env, app, ti, trigger)
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, ENDED, timeout=90)
    assert final.state == "scheduled", trigger_logs(env, ti)[-3000:]
    assert e2e.xcom(env, ti) == [1, 2, 3]
    wait_for(lambda: fake_kube.get_pod(e2e.NAMESPACE, pod.name) is None, 30, what="finalizer deletes the pod")

    run_like_worker(env, ti)
    assert current_ti(ti).state == "success"
    assert e2e.xcom(env, ti) == [1, 2, 3]
