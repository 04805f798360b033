"""Read the ledger for ``kpo-finalizer status``: read-only, never migrating, never a payload.

``Ledger.connect`` migrates, which a look must not do (an operator's status check against a
production ledger may not change its schema). So this opens its own connection: SQLite in
``mode=ro`` (a missing file is not created), PostgreSQL with ``default_transaction_read_only``.
Only coordinates, steps, outcome kinds and bounded reasons are selected: the spec and the XCom
payload can hold secrets and never leave the database here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from finalizer.exceptions import ConfigurationError, LedgerError
from finalizer.jobs import Step
from finalizer.ledger.dialect import normalize_url, translate_errors
from finalizer.ledger.migrations import LATEST_VERSION, schema_version
from finalizer.ledger.schema import instances, jobs
from finalizer.ledger.summary import FAILURE_KINDS, InstanceRow, JobRow, LedgerRows

T = TypeVar("T")

#: Longest reason or error text read per job (a termination message can be long).
REASON_CHARS = 300
#: Parked jobs and failures listed (the counts are complete).
LIST_LIMIT = 10
#: The outcome shown for a job handed to the worker, in the jobs-by-step table.
HANDED_OVER = "handed_over"


class LedgerNotFoundError(LedgerError):
    """There is no ledger there: no SQLite file, or a database without the ledger's tables."""


def parse_ledger_url(url: str) -> sa.URL:
    """``normalize_url``, but a bad URL's message never repeats it (it may hold a password)."""
    try:
        return normalize_url(url)
    except ConfigurationError as exc:
        if url not in str(exc):
            raise
    except ValueError:
        pass
    raise ConfigurationError(
        "the ledger URL is not a valid database URL (value not shown: it may hold a password); "
        "expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    )


def _kind_and_reason(dialect: str) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
    if dialect == "postgresql":
        as_json = sa.cast(jobs.c.outcome, postgresql.JSON)
        kind = sa.func.json_extract_path_text(as_json, "kind")
        reason = sa.func.json_extract_path_text(as_json, "reason")
    else:
        kind = sa.func.json_extract(jobs.c.outcome, "$.kind")
        reason = sa.func.json_extract(jobs.c.outcome, "$.reason")
    return kind, sa.func.substr(reason, 1, REASON_CHARS)


def _job_columns(dialect: str) -> list[sa.ColumnElement[Any]]:
    kind, reason = _kind_and_reason(dialect)
    c = jobs.c
    return [
        c.key, c.dag_id, c.task_id, c.run_id, c.map_index, c.try_number, c.namespace, c.pod_name,
        c.step, c.owner, c.created_at, c.updated_at,
        kind.label("outcome_kind"), reason.label("reason"),
        sa.func.substr(c.error, 1, REASON_CHARS).label("error"),
    ]  # fmt: skip


def _utc(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite hands back text for a computed column
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _job_row(row: sa.RowMapping) -> JobRow:
    return JobRow(
        key=row["key"],
        dag_id=row["dag_id"],
        task_id=row["task_id"],
        run_id=row["run_id"],
        map_index=int(row["map_index"]),
        try_number=int(row["try_number"]),
        namespace=row["namespace"],
        pod_name=row["pod_name"],
        step=int(row["step"]),
        owner=row["owner"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        outcome_kind=row["outcome_kind"],
        reason=row["reason"],
        error=row["error"],
    )


def _handed_over_column(version: int) -> sa.ColumnElement[Any] | None:
    """The hand-over mark (``handed_over_at``, schema version 2), or None on a ledger without it:
    then no job counts as handed over and the report says "not recorded"."""
    if version < 2 or "handed_over_at" not in jobs.c:
        return None
    return jobs.c["handed_over_at"]


def read_rows(conn: sa.Connection, display_url: str) -> LedgerRows:
    """Every query of the report, on one read-only connection."""
    version = schema_version(conn)
    if version == 0:
        raise LedgerNotFoundError(f"{display_url} holds no kpo-finalizer ledger (no schema version table)")
    if version > LATEST_VERSION:
        raise LedgerError(
            f"the ledger at {display_url} is schema version {version}, newer than this kpo-finalizer "
            f"reads ({LATEST_VERSION}): run the status command of the version that wrote it"
        )
    dialect = conn.dialect.name
    now = (
        _utc(conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one())
        if dialect == "postgresql"
        else datetime.now(UTC)
    )
    kind, _ = _kind_and_reason(dialect)
    handed = _handed_over_column(version)
    # A job handed to the worker is no longer the finalizer's: not in flight, not a failure.
    ours = sa.true() if handed is None else handed.is_(None)
    # In the table by step: a handed-over job's outcome column says so.
    shown = kind if handed is None else sa.case((handed.is_not(None), sa.literal(HANDED_OVER)), else_=kind)
    unfinished = sa.and_(jobs.c.step < int(Step.DONE), ours)
    columns = _job_columns(dialect)
    no_instance = ~sa.exists().where(instances.c.id == jobs.c.owner)
    oldest = conn.execute(
        sa.select(*columns).where(unfinished).order_by(jobs.c.created_at).limit(1)
    ).mappings().first()  # fmt: skip
    return LedgerRows(
        url=display_url,
        now=now,
        schema_version=version,
        instances=[
            InstanceRow(r.id, r.host, int(r.pid), _utc(r.started), _utc(r.heartbeat))
            for r in conn.execute(sa.select(instances))
        ],
        step_counts=[
            (int(step), k, int(n))
            for step, k, n in conn.execute(
                sa.select(jobs.c.step, shown, sa.func.count()).group_by(jobs.c.step, shown)
            )
        ],
        in_flight_by_owner=[
            (owner, int(n))
            for owner, n in conn.execute(
                sa.select(jobs.c.owner, sa.func.count()).where(unfinished).group_by(jobs.c.owner)
            )
        ],
        oldest_in_flight=_job_row(oldest) if oldest is not None else None,
        parked=[
            _job_row(r)
            for r in conn.execute(
                sa.select(*columns)
                .where(unfinished, sa.or_(jobs.c.owner.is_(None), no_instance))
                .order_by(jobs.c.created_at)
                .limit(LIST_LIMIT)
            ).mappings()
        ],
        handed_over=(
            None
            if handed is None
            else int(conn.execute(sa.select(sa.func.count()).where(handed.is_not(None))).scalar_one())
        ),
        failures=[
            _job_row(r)
            for r in conn.execute(
                sa.select(*columns)
                .where(ours, sa.or_(kind.in_(sorted(FAILURE_KINDS)), jobs.c.error.is_not(None)))
                .order_by(jobs.c.updated_at.desc())
                .limit(LIST_LIMIT)
            ).mappings()
        ],
    )


def _read_sqlite(url: sa.URL, display: str, timeout: float) -> LedgerRows:
    database = url.database or ""
    if database in ("", ":memory:"):
        raise LedgerNotFoundError(f"{display}: an in-memory SQLite ledger lives only inside its process")
    path = Path(database)
    if not path.is_file():
        raise LedgerNotFoundError(f"no ledger file at {path}")
    return _read_only_sqlite(path, timeout, lambda conn: read_rows(conn, display))


def _read_only_sqlite(path: Path, timeout: float, read: Callable[[sa.Connection], T]) -> T:
    """``read`` on a connection that can neither create nor write the file (``mode=ro``)."""
    # The URI form needs the path percent-encoded.
    ro = f"sqlite+pysqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"
    engine = sa.create_engine(ro, connect_args={"timeout": timeout})
    try:
        with engine.connect() as conn:
            return read(conn)
    finally:
        engine.dispose()


def _postgres_engine(url: sa.URL, timeout: float) -> AsyncEngine:
    """One connection at a time, every transaction read-only (the server refuses any write)."""
    if importlib.util.find_spec("asyncpg") is None:  # the driver SQLAlchemy loads for this URL
        raise LedgerError(
            "a PostgreSQL ledger needs asyncpg, which is not installed here: "
            "pip install 'kpo-finalizer[postgres]'"
        )
    return create_async_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {
                "application_name": "kpo-finalizer status",
                "default_transaction_read_only": "on",
            },
        },
    )


async def _read_postgres(url: sa.URL, display: str, within: float) -> LedgerRows:
    engine = _postgres_engine(url, within)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read_rows, display)
    finally:
        await engine.dispose()


async def read_ledger(url: str, *, within: float = 10.0) -> LedgerRows:
    """The report's rows from the ledger at ``url``, read-only; ``within`` bounds each step (seconds).

    Raises ``LedgerNotFoundError`` (no file, no tables), ``LedgerUnavailableError`` (cannot
    connect), ``LedgerError`` (anything else the database said), ``ConfigurationError`` (bad URL).
    """
    parsed = parse_ledger_url(url)
    display = parsed.render_as_string(hide_password=True)
    async with translate_errors("status read", parsed):
        with anyio.fail_after(within * 2):
            if parsed.get_backend_name() == "sqlite":
                return await anyio.to_thread.run_sync(_read_sqlite, parsed, display, within)
            return await _read_postgres(parsed, display, within)


def _version_line(display: str, version: int) -> str:
    if version > LATEST_VERSION:
        raise LedgerError(
            f"the ledger at {display} is schema version {version}, newer than this kpo-finalizer "
            f"({LATEST_VERSION}): upgrade kpo-finalizer or point it at another ledger"
        )
    if version == 0:
        return f"{display} reachable; no ledger tables yet (the finalizer creates them when it starts)"
    return f"{display} reachable, schema version {version}"


def _probe_sqlite(url: sa.URL, display: str, timeout: float) -> str:
    path = Path(url.database or "")
    if url.database in (None, "", ":memory:"):
        return f"{display}: in-memory, private to each process (nothing to test)"
    if not path.exists():
        existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise LedgerError(
                f"no ledger file at {path}, and {existing} is not writable: it cannot be created"
            )
        return (
            f"no ledger file at {path} yet; the finalizer creates it when it starts ({existing} is writable)"
        )
    if not path.is_file():
        raise LedgerError(f"{path} is not a file")
    if not os.access(path, os.R_OK | os.W_OK):
        raise LedgerError(f"{path} is not readable and writable by this user")
    return _version_line(display, _read_only_sqlite(path, timeout, schema_version))


async def _probe_postgres(url: sa.URL, display: str, within: float) -> str:
    engine = _postgres_engine(url, within)
    try:
        async with engine.connect() as conn:
            version = await conn.run_sync(schema_version)
    finally:
        await engine.dispose()
    return _version_line(display, version)


async def probe_ledger(url: str, within: float = 10.0) -> str:
    """Can the finalizer use the ledger at ``url``? A one-line answer, or ``LedgerError``. Read-only."""
    parsed = parse_ledger_url(url)
    display = parsed.render_as_string(hide_password=True)
    async with translate_errors("connection test", parsed):
        with anyio.fail_after(within * 2):
            if parsed.get_backend_name() == "sqlite":
                return await anyio.to_thread.run_sync(_probe_sqlite, parsed, display, within)
            return await _probe_postgres(parsed, display, within)
