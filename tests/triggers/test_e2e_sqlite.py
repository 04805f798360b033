"""End to end on SQLite: a real `airflow triggerer` finishes KPO tasks itself (no scheduler, no worker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.triggerer import TriggererProcess, trigger_logs, wait_for, wait_for_ti_state
from tests.triggers import e2e, scenarios

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    return e2e.prepare_env(tmp_path_factory.mktemp("airflow-sqlite"), None)


@pytest.fixture(scope="module")
def triggerer(env: AirflowEnv) -> Iterator[TriggererProcess]:
    env.activate()
    ledger = f"sqlite:///{env.home / 'ledger.sqlite3'}"
    with TriggererProcess(env, extra_env=e2e.finalizer_env(ledger)) as proc:
        yield proc


@pytest.fixture(scope="module")
def results(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube, kubeconfig_path: Path
) -> dict[str, scenarios.Result]:
    async def main() -> dict[str, scenarios.Result]:
        env.activate()
        async with env.execution_api_app() as app:
            return await scenarios.run_matrix(env, app, fake_kube, kubeconfig_path, "sq")

    return anyio.run(main)


@pytest.mark.parametrize("task_id", [c.task_id for c in scenarios.CASES])
def test_scenario(task_id: str, results: dict[str, scenarios.Result], fake_kube: FakeKube) -> None:
    scenarios.check(results[task_id], fake_kube)


def test_warm_latency_from_container_exit_to_success(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    results: dict[str, scenarios.Result],
    fake_kube: FakeKube,
    kubeconfig_path: Path,
) -> None:
    """After the matrix (triggerer, finalizer and supervisor warm): base exits → TI SUCCESS in the DB."""
    pod = e2e.new_pod(fake_kube, "sq-warm")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, '{"warm": true}')
    ti = env.create_run(e2e.DAG_ID).ti("d")

    async def defer() -> None:
        env.activate()
        async with env.execution_api_app() as app:
            await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig_path, pod, "d"))

    anyio.run(defer)
    wait_for(lambda: "finishing pod" in trigger_logs(env, ti), 60, 0.05, "the trigger to start")
    time.sleep(1.0)  # let the job reach its watch: the measured span is completion -> success only
    started = time.monotonic()
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, {"success", "failed"}, timeout=60)
    seconds = time.monotonic() - started
    print(f"[kpo-finalizer e2e] warm: base exit -> {final.state} in Airflow's DB after {seconds:.2f}s")
    assert final.state == "success"
    assert e2e.xcom(env, ti) == {"warm": True}
    assert seconds < 15
