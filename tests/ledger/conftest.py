"""Ledger fixtures: every test runs on a fresh SQLite file AND a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from finalizer.ledger import Ledger


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="session")
def shared_pg_url(make_postgres_database: Callable[[str], str]) -> str:
    """One PostgreSQL database for the session (creating and dropping one per test is slow)."""
    return asyncpg_url(make_postgres_database("kpof_ledger"))


def _empty_tables(url: str) -> None:
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(url.replace("+asyncpg", ""))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('kpof_jobs') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("TRUNCATE kpof_jobs, kpof_instances")
    finally:
        conn.close()


@pytest.fixture
def pg_url(shared_pg_url: str) -> str:
    """The shared PostgreSQL database, with empty ledger tables."""
    _empty_tables(shared_pg_url)
    return shared_pg_url


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ledger database with empty tables, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A brand-new, empty database (for migration tests), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    make: Callable[[str], str] = request.getfixturevalue("make_postgres_database")
    return asyncpg_url(make("kpof_fresh"))


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    async with await Ledger.connect(ledger_url, connect_timeout=5, operation_timeout=10) as opened:
        yield opened
