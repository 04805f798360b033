"""End to end on PostgreSQL (metadata DB and ledger): a real `airflow triggerer` finishes KPO tasks.

The setup (Airflow home, triggerer, matrix) is ``conftest.py``'s; this module only points the
metadata DB and the ledger at fresh PostgreSQL databases.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from finalizer.testing.fake_kube import FakeKube
from tests.triggers import scenarios

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def metadata_db(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_af")


@pytest.fixture(scope="module")
def ledger_url(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_ledger")


@pytest.mark.parametrize("task_id", [c.task_id for c in scenarios.CASES])
def test_scenario(task_id: str, results: dict[str, scenarios.Result], fake_kube: FakeKube) -> None:
    scenarios.check(results[task_id], fake_kube)
