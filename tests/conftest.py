"""Root test configuration: run anyio tests on asyncio (kubernetes_asyncio needs it)."""

from __future__ import annotations

import os

import pytest

from tests.support.optional import unavailable

pytest_plugins = ["finalizer.testing.fixtures"]

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _postgres_admin_url() -> str:
    return os.environ.get("KPO_FINALIZER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A reachable PostgreSQL server URL (sync form, ``postgresql://``).

    Skips with a clear reason when none is reachable, except under ``CI=true`` where a
    missing PostgreSQL is a failure.
    """
    import psycopg2

    url = _postgres_admin_url()
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except Exception as exc:  # pragma: no cover - depends on the machine
        unavailable(f"PostgreSQL not reachable at {url} (set KPO_FINALIZER_TEST_POSTGRES_URL): {exc}")
    return url


@pytest.fixture(scope="session")
def make_postgres_database(postgres_admin_url: str):  # type: ignore[no-untyped-def]
    """Factory: ``make_postgres_database("prefix")`` → URL of a fresh, empty database.

    Databases are dropped at the end of the session.
    """
    import uuid

    import psycopg2

    created: list[str] = []

    def make(prefix: str = "kpof") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = psycopg2.connect(postgres_admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        created.append(name)
        base = postgres_admin_url.rsplit("/", 1)[0]
        return f"{base}/{name}"

    yield make
    conn = psycopg2.connect(postgres_admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in created:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
