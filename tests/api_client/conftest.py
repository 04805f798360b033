"""Fixtures: the REAL Airflow 3.3.2 Task Execution API app, once per backend per session.

``airflow_api`` is a session fixture parametrized over SQLite (a file) and PostgreSQL. Airflow's config
and ORM are process-global, so both backends run in this one process one after the other:
``AirflowEnv.prepare`` re-points ``airflow.settings`` (``configure_vars`` + ``reconfigure_orm``) and
each backend gets its own app (pytest finishes the first parameter's fixture before it builds the
second). That costs one app cold start (~3 s) per backend instead of a subprocess per backend, and
the tests stay ordinary in-process tests. The session-scoped ``anyio_backend`` below keeps one event
loop for the session, so the app's lifespan and async DB engine live on the loop the tests use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_client import ExecutionAPIClient, RetryPolicy
from finalizer.testing.airflow_env import AirflowEnv, TIInfo

DAG_ID = "kpof_api_client"
DAG_SOURCE = f'''
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("{DAG_ID}", schedule=None):
    EmptyOperator(task_id="producer")
    EmptyOperator(task_id="other")
'''

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=5.0, jitter=0.0)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class AirflowAPI:
    """A migrated DB with one DAG, and the running Execution API app."""

    backend: str
    env: AirflowEnv
    app: Any

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def new_ti(self, state: str | None = "running", task_id: str = "producer") -> TIInfo:
        """A fresh dag run; its ``task_id`` TI put in ``state``."""
        run = self.env.create_run(DAG_ID)
        ti = run.ti(task_id)
        if state == "deferred":
            self.env.defer_ti(ti.id, "airflow.triggers.testing.SuccessTrigger", {})
        elif state is not None:
            self.env.set_ti_state(ti.id, state)
        return self.env.get_ti(ti.id)

    def client(self, token: Any = None, *, ti: TIInfo | None = None, **kwargs: Any) -> ExecutionAPIClient:
        """A client on the app; the token defaults to a fresh one for ``ti``."""
        if token is None and ti is not None:
            token = self.env.mint_token(ti.id)
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("transport", self.transport())
        return ExecutionAPIClient("http://execution-api", token=token, **kwargs)


@pytest.fixture(scope="session")
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def airflow_api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _restore_environ: None,
) -> AsyncIterator[AirflowAPI]:
    home: Path = tmp_path_factory.mktemp(f"airflow_{request.param}")
    if request.param == "postgres":
        make: Callable[[str], str] = request.getfixturevalue("make_postgres_database")
        db_url: str | None = make("kpof_api")
    else:
        db_url = None
    env = AirflowEnv.prepare(home, db_url)
    env.migrate()
    env.add_dag("kpof_api_client.py", DAG_SOURCE)
    async with env.execution_api_app() as app:
        yield AirflowAPI(request.param, env, app)
    from airflow import settings

    settings.dispose_orm()
