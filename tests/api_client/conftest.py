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
from pathlib import Path

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from tests.support.airflow_api import DAG_SOURCE, AirflowAPI


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


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
