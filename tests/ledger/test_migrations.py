"""Versioned schema: idempotent, concurrent-safe, matches schema.py, refuses a newer database."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest
import sqlalchemy as sa

from finalizer.exceptions import ConfigurationError, LedgerError
from finalizer.jobs import Step
from finalizer.ledger import LATEST_VERSION, Ledger, schema
from finalizer.ledger.dialect import normalize_url
from finalizer.ledger.migrations import MIGRATIONS
from finalizer.ledger.schema import STEP_COLUMNS, metadata

pytestmark = pytest.mark.anyio


async def _versions(url: str) -> list[int]:
    query = sa.text("SELECT version FROM kpof_schema_version ORDER BY version")
    async with await Ledger.connect(url) as ledger:
        return await ledger.run_sql(lambda conn: [r[0] for r in conn.execute(query)])


async def test_migrations_are_idempotent(fresh_ledger_url: str) -> None:
    for _ in range(3):
        async with await Ledger.connect(fresh_ledger_url) as ledger:
            assert await ledger.schema_version() == LATEST_VERSION
    assert await _versions(fresh_ledger_url) == [v for v, _, _ in MIGRATIONS]


async def test_concurrent_first_connects_migrate_once(fresh_ledger_url: str) -> None:
    opened: list[Ledger] = []

    async def open_one() -> None:
        opened.append(await Ledger.connect(fresh_ledger_url, operation_timeout=20))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(open_one)
    for ledger in opened:
        await ledger.aclose()
    assert await _versions(fresh_ledger_url) == [v for v, _, _ in MIGRATIONS]


def _reflect(conn: sa.Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(conn)
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}


async def test_migrated_database_matches_schema_module(fresh_ledger_url: str) -> None:
    """A change to schema.py without a migration fails here."""
    async with await Ledger.connect(fresh_ledger_url) as ledger:
        tables = await ledger.run_sql(_reflect)
    expected = {name: {c.name for c in table.columns} for name, table in metadata.tables.items()}
    assert tables == expected
    assert set(STEP_COLUMNS) == set(Step)


async def test_a_newer_schema_is_refused(fresh_ledger_url: str) -> None:
    future = schema.schema_version.insert().values(
        version=LATEST_VERSION + 1, name="future", applied_at=datetime.now(UTC)
    )
    async with await Ledger.connect(fresh_ledger_url) as ledger:
        await ledger.run_sql(lambda conn: conn.execute(future))
    with pytest.raises(LedgerError, match=f"version {LATEST_VERSION + 1}, newer than"):
        await Ledger.connect(fresh_ledger_url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/x.db", "sqlite+pysqlite:////tmp/x.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+pysqlite:////tmp/x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_urls_get_async_drivers(url: str, expected: str) -> None:
    assert normalize_url(url).render_as_string() == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", ""])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError, match="ledger URL"):
        normalize_url(url)


async def test_bad_timeouts_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="connect_timeout must be > 0"):
        await Ledger.connect("sqlite:///x.db", connect_timeout=0)
