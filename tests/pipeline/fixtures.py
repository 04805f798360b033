"""Fixtures shared by tests/pipeline and tests/service (imported by both conftests)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from finalizer.testing.fake_kube import FakeKube
from tests.pipeline.harness import AirflowServer, Rig, World, fast_config, start_airflow, warm_up

#: One server per session even though two conftests (pipeline, service) declare the fixture.
_SERVERS: list[AirflowServer] = []


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """The real Execution API on a real Airflow DB, served over HTTP once per session."""
    if _SERVERS:
        yield _SERVERS[0]
        return
    env, token, run = start_airflow(tmp_path_factory.mktemp("airflow"))
    server = AirflowServer(env)
    server.token = token
    with server.running():
        warm_up(server, run)
        _SERVERS.append(server)
        try:
            yield server
        finally:
            _SERVERS.clear()


@pytest.fixture
async def world(airflow_server: AirflowServer, tmp_path: Path) -> AsyncIterator[World]:
    env = airflow_server.env
    if (
        os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        != env.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    ):
        env.activate()  # another test module re-pointed Airflow's ORM: come back to ours
    async with FakeKube(bookmark_interval=0.2) as kube:
        yield World(
            kube=kube,
            airflow=airflow_server,
            ledger_url=f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}",
            config=fast_config(tmp_path),
        )


@pytest.fixture
async def rig(world: World) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        yield await Rig(world, stack).open()
