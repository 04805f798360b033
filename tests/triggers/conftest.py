"""Fixtures for the end-to-end tests: the fake cluster, one Airflow home and triggerer per module.

The e2e modules share one setup: an Airflow home with the e2e DAG (``env``), the finalizer's
ledger (``ledger_url``), the triggerer's environment (``extra_env``), a real ``airflow triggerer``
(``triggerer``), an in-process Execution API app to defer tasks as a worker does (``app``), and
the scenario matrix run once against that triggerer (``results``). Everything defaults to SQLite;
a module overrides ``metadata_db`` and ``ledger_url`` for PostgreSQL (pytest: a fixture defined in
the module wins over this one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e, scenarios


@pytest.fixture(scope="session")
def fake_kube() -> Iterator[FakeKube]:
    with FakeKube.in_thread() as kube:
        yield kube


@pytest.fixture(scope="session")
def kubeconfig_path(fake_kube: FakeKube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config.json")


def _module_slug(request: pytest.FixtureRequest) -> str:
    """``test_e2e_sqlite`` → ``e2e-sqlite``: names this module's Airflow home and pods."""
    name = str(request.module.__name__).rsplit(".", 1)[-1]
    return name.removeprefix("test_").replace("_", "-")


@pytest.fixture(scope="module")
def metadata_db() -> str | None:
    """Airflow's metadata DB URL; None = SQLite in the Airflow home."""
    return None


@pytest.fixture(scope="module")
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, metadata_db: str | None
) -> AirflowEnv:
    """A migrated Airflow home with the e2e DAG, for this module."""
    return e2e.prepare_env(tmp_path_factory.mktemp(f"airflow-{_module_slug(request)}"), metadata_db)


@pytest.fixture(scope="module")
def ledger_url(env: AirflowEnv) -> str:
    """The finalizer's ledger: SQLite in the Airflow home."""
    return f"sqlite:///{env.home / 'ledger.sqlite3'}"


@pytest.fixture(scope="module")
def extra_env(ledger_url: str) -> dict[str, str]:
    """A triggerer's environment: test heartbeats and the ``[kpo_finalizer]`` settings."""
    return e2e.finalizer_env(ledger_url)


@pytest.fixture(scope="module")
def triggerer(env: AirflowEnv, extra_env: dict[str, str]) -> Iterator[TriggererProcess]:
    """One real ``airflow triggerer`` for the module (start-up and cold starts paid once)."""
    env.activate()
    with TriggererProcess(env, extra_env=extra_env) as proc:
        yield proc


@pytest.fixture
async def app(env: AirflowEnv) -> AsyncIterator[Any]:
    """The Execution API app in this process, to defer tasks as a worker does."""
    env.activate()
    async with env.execution_api_app() as application:
        yield application


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest,
    env: AirflowEnv,
    triggerer: TriggererProcess,
    fake_kube: FakeKube,
    kubeconfig_path: Path,
) -> dict[str, scenarios.Result]:
    """The scenario matrix, run once against the module's triggerer."""
    return scenarios.run_matrix_sync(env, fake_kube, kubeconfig_path, _module_slug(request))
