"""Kubernetes Jobs finished in a real ``airflow triggerer`` on PostgreSQL (metadata DB and ledger).

The cases are ``test_e2e_jobs_sqlite``'s success (parallelism 1 and 3) and backoffLimit ones, run
here against fresh PostgreSQL databases: this module only points the DB and the ledger there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from tests.triggers import jobs_e2e as jobs
from tests.triggers.test_e2e_jobs_sqlite import (  # noqa: F401 - collected here, with this module's fixtures
    test_a_job_past_its_backoff_limit_fails_and_airflow_retries,
    test_success_pushes_each_pod_s_xcom_in_pod_order_and_the_job,
)

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def metadata_db(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_jobs_af")


@pytest.fixture(scope="module")
def ledger_url(make_postgres_database: Callable[[str], str]) -> str:
    return make_postgres_database("kpof_jobs_ledger")


@pytest.fixture(scope="module")
def env(env: AirflowEnv, kubeconfig_path: Path) -> Iterator[AirflowEnv]:
    yield from jobs.add_dag(env, kubeconfig_path)
