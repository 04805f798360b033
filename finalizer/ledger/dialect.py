"""Engine set-up per database, the clock, and the one place database errors are translated.

SQLite (aiosqlite): a file URL; WAL journal; every transaction is ``BEGIN IMMEDIATE`` so a
writer takes the write lock up front instead of failing to upgrade a read lock half-way;
``busy_timeout`` bounds the wait for another process's lock. WAL + ``synchronous=NORMAL``
survives a killed process (what we guard against); not an OS crash.

PostgreSQL (asyncpg): a bounded connect timeout and command timeout, pre-ping, and the
database's own clock (``clock_timestamp()``) for heartbeats and staleness, so instances on
hosts with skewed clocks still agree on who is alive.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from finalizer.exceptions import ConfigurationError, LedgerError, LedgerUnavailableError

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def normalize_url(url: str) -> sa.URL:
    """Accept ``sqlite:///…`` / ``postgresql://…`` and pick our async drivers."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise ConfigurationError(f"ledger URL {url!r} is not a database URL: {error}") from error
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"ledger URL must be SQLite or PostgreSQL, got {backend!r}")
    # A sync URL (``sqlite:///``, ``postgresql+psycopg2://``) is taken to mean the same database.
    parsed = parsed.set(drivername=_DRIVERS[backend])
    return parsed


def is_memory(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_engine(url: sa.URL, *, connect_timeout: float, operation_timeout: float) -> AsyncEngine:
    """An async engine with bounded waits everywhere a connection can stall."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, connect_timeout=connect_timeout)
    return create_async_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_timeout=operation_timeout,
        pool_pre_ping=True,
        connect_args={
            "timeout": connect_timeout,
            "command_timeout": operation_timeout,
            "server_settings": {"application_name": f"kpo-finalizer@{socket.gethostname()}"[:63]},
        },
    )


def _sqlite_engine(url: sa.URL, *, connect_timeout: float) -> AsyncEngine:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": connect_timeout}}
    if is_memory(url):
        # One shared connection: the Ledger serialises operations on SQLite (see store.py).
        kwargs.update(poolclass=StaticPool)
    engine = create_async_engine(url, **kwargs)
    busy_ms = int(connect_timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is DEFERRED and skips DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not is_memory(url):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_expr(dialect: str) -> sa.ColumnElement[datetime]:
    """'Now' as the database should record it: the server clock on PostgreSQL."""
    if dialect == "postgresql":
        return sa.func.clock_timestamp(type_=sa.DateTime(timezone=True))
    return sa.literal(utcnow(), sa.DateTime(timezone=True))


def ago_expr(dialect: str, seconds: float) -> sa.ColumnElement[datetime]:
    """'Now minus ``seconds``' on the same clock as ``now_expr``."""
    delta = timedelta(seconds=seconds)
    if dialect == "postgresql":
        return sa.func.clock_timestamp(type_=sa.DateTime(timezone=True)) - sa.literal(delta, sa.Interval())
    return sa.literal(utcnow() - delta, sa.DateTime(timezone=True))


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)


@contextlib.asynccontextmanager
async def translate_errors(what: str, url: sa.URL) -> AsyncIterator[None]:
    """Database and driver errors → ``LedgerUnavailableError`` / ``LedgerError``, ``from`` the original.

    Messages name the operation and the database (password hidden), never a payload.
    """
    where = url.render_as_string(hide_password=True)
    try:
        yield
    except LedgerError:
        raise
    except TimeoutError as error:
        raise LedgerUnavailableError(f"ledger {what} timed out ({where})") from error
    except _UNAVAILABLE as error:
        raise LedgerUnavailableError(
            f"ledger {what} failed: database unavailable ({where}): {_short(error)}"
        ) from error
    except (OSError, ConnectionError) as error:
        raise LedgerUnavailableError(f"ledger {what} failed: cannot reach {where}: {error}") from error
    except exc.SQLAlchemyError as error:
        raise LedgerError(f"ledger {what} failed ({where}): {_short(error)}") from error
    except Exception as error:
        # asyncpg raises its own errors for some connection-level failures.
        if type(error).__module__.startswith("asyncpg"):
            raise LedgerUnavailableError(f"ledger {what} failed ({where}): {error}") from error
        raise


def _short(error: exc.SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's SQL/parameters echo (parameters may hold payloads)."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {error.orig}"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
