"""End to end on PostgreSQL (metadata DB and ledger): a real `airflow triggerer` finishes KPO tasks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.triggerer import TriggererProcess
from tests.triggers import e2e, scenarios

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, make_postgres_database: Callable[[str], str]) -> AirflowEnv:
    return e2e.prepare_env(tmp_path_factory.mktemp("airflow-pg"), make_postgres_database("kpof_af"))


@pytest.fixture(scope="module")
def ledger_url(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_ledger")


@pytest.fixture(scope="module")
def triggerer(env: AirflowEnv, ledger_url: str) -> Iterator[TriggererProcess]:
    env.activate()
    with TriggererProcess(env, extra_env=e2e.finalizer_env(ledger_url)) as proc:
        yield proc


@pytest.fixture(scope="module")
def results(
    env: AirflowEnv, triggerer: TriggererProcess, fake_kube: FakeKube, kubeconfig_path: Path
) -> dict[str, scenarios.Result]:
    async def main() -> dict[str, scenarios.Result]:
        env.activate()
        async with env.execution_api_app() as app:
            return await scenarios.run_matrix(env, app, fake_kube, kubeconfig_path, "pg")

    return anyio.run(main)


@pytest.mark.parametrize("task_id", [c.task_id for c in scenarios.CASES])
def test_scenario(task_id: str, results: dict[str, scenarios.Result], fake_kube: FakeKube) -> None:
    scenarios.check(results[task_id], fake_kube)
