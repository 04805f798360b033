"""How a ledger operation reaches each database: one sync function, run as one unit.

Every ledger operation is written once, as a function of a SQLAlchemy ``Connection``. A runner
executes it:

- SQLite: a sync engine (the stdlib ``sqlite3``) with ONE shared connection, driven from a worker
  thread. Concurrent operations are group-committed: one ``BEGIN IMMEDIATE`` transaction and one
  thread hop per batch (if one operation fails, the batch is re-run one transaction each).
  aiosqlite pays a thread hop per cursor/execute/fetch/commit, several per write: on a busy
  machine the ledger would have been the bottleneck of the whole pipeline.
  ``BEGIN IMMEDIATE`` takes the write lock up front (no lock upgrade failing half-way);
  ``busy_timeout`` bounds waits for other processes; WAL + ``synchronous=NORMAL`` survives a
  killed process (what we guard against), not an OS crash.
- PostgreSQL: SQLAlchemy asyncio over asyncpg, the function run with ``run_sync`` (greenlet),
  bounded connect and command timeouts, autocommit unless the operation asks to be atomic
  (migrations): BEGIN and COMMIT would triple the round trips of a one-statement write, and every
  ledger write is one statement or a compare-and-set. No pre-ping (another round trip): a dead
  pooled connection fails the operation with ``LedgerUnavailableError``, the pool drops it, and
  the caller's ledger retry policy tries again.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import anyio
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

T = TypeVar("T")
Operation = Callable[[sa.Connection], T]


class Runner(Protocol):
    """Runs one operation; ``aclose`` releases every connection.

    ``atomic=True`` runs it in one transaction. Otherwise the runner may run each statement on
    its own (PostgreSQL autocommit: one round trip instead of three); every ledger write is a
    single statement or a compare-and-set, so that is safe.
    """

    async def run(self, op: Operation[T], *, atomic: bool = False) -> T: ...

    async def aclose(self) -> None: ...


def is_memory(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


@dataclass(eq=False)
class _Entry:
    """One queued operation and, once its batch committed, its result or error."""

    op: Operation[Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = False
    cancelled: bool = False


class _OperationFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _enable_wal(cursor: Any, busy_timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried within ``busy_timeout``.

    Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    at once, without its busy handler, while another process does the same (seen in CI with four
    first connects at once); the other settings and every later statement honour busy_timeout.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)  # in the ledger's worker thread (connect), never on an event loop
            delay = min(delay * 2, 0.25)


class SQLiteRunner:
    """One sqlite3 connection, used from a worker thread; concurrent operations commit as a group.

    Operations queue up while a batch runs; the next caller to get the lock runs every queued
    operation in ONE ``BEGIN IMMEDIATE`` transaction and ONE thread hop. Nobody learns its result
    before the batch committed, so an acknowledged write is a durable write.
    """

    def __init__(self, url: sa.URL, *, busy_timeout: float, max_batch: int = 256) -> None:
        self._lock = anyio.Lock()
        self._pending: list[_Entry] = []
        self._max_batch = max_batch
        self._engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"),
            poolclass=StaticPool,
            connect_args={"timeout": busy_timeout, "check_same_thread": False},
        )
        busy_ms = int(busy_timeout * 1000)
        memory = is_memory(url)

        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            # We emit BEGIN ourselves: pysqlite's implicit BEGIN is DEFERRED and skips DDL.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if not memory:
                _enable_wal(cursor, busy_timeout)
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _run_batch(self, batch: list[_Entry]) -> None:
        """In the worker thread: the whole batch in one transaction.

        If one operation raises, the batch is rolled back and every operation re-run in its own
        transaction (operations are functions of the database state, so re-running is exact), so
        only the failing one fails. A failing BEGIN or COMMIT fails the whole batch at once.
        """
        live = [entry for entry in batch if not entry.cancelled]
        try:
            self._transaction(live)
        except _OperationFailed:
            for entry in live:
                try:
                    self._transaction([entry])
                except _OperationFailed as failed:
                    entry.result, entry.error = None, failed.error
                except Exception as exc:
                    entry.result, entry.error = None, exc
        except Exception as exc:  # BEGIN/COMMIT failed (locked, disk, …): nothing of the batch stuck
            for entry in live:
                entry.result, entry.error = None, exc
        for entry in batch:
            entry.done = True

    def _transaction(self, entries: list[_Entry]) -> None:
        with self._engine.begin() as conn:
            for entry in entries:
                try:
                    entry.result = entry.op(conn)
                except Exception as exc:
                    raise _OperationFailed(exc) from exc

    async def run(self, op: Operation[T], *, atomic: bool = False) -> T:
        """Always atomic: SQLite operations run inside the batch's transaction."""
        entry = _Entry(op)
        self._pending.append(entry)
        try:
            async with self._lock:
                if not entry.done:
                    # Ours first, then whatever else is queued (any order is a valid serial order).
                    others = [e for e in self._pending if e is not entry][: self._max_batch - 1]
                    batch = [entry, *others]
                    taken = {id(e) for e in batch}
                    self._pending = [e for e in self._pending if id(e) not in taken]
                    # Not abandoned on cancel: the thread holds the connection; busy_timeout bounds it.
                    await anyio.to_thread.run_sync(self._run_batch, batch)
        except BaseException:
            entry.cancelled = True  # cancelled while queued: a later batch skips it
            if entry in self._pending:
                self._pending.remove(entry)
            raise
        if entry.error is not None:
            raise entry.error
        return cast(T, entry.result)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await anyio.to_thread.run_sync(self._engine.dispose)


class PostgresRunner:
    """A small asyncpg pool; an operation runs on one pooled connection (autocommit unless atomic)."""

    def __init__(self, url: sa.URL, *, connect_timeout: float, operation_timeout: float) -> None:
        self._engine: AsyncEngine = create_async_engine(
            url,
            # A fixed pool: overflow connections are closed on return, and under load that means a
            # new PostgreSQL backend (fork + auth) per operation, which costs more than waiting for a
            # pooled connection (``python -m finalizer.bench.ledger --url postgresql://…``).
            pool_size=10,
            max_overflow=0,
            pool_timeout=operation_timeout,
            pool_recycle=1800,
            connect_args={
                "timeout": connect_timeout,
                "command_timeout": operation_timeout,
                "server_settings": {"application_name": f"kpo-finalizer@{socket.gethostname()}"[:63]},
            },
        )
        self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")

    async def run(self, op: Operation[T], *, atomic: bool = False) -> T:
        if atomic:
            async with self._engine.begin() as conn:
                return await conn.run_sync(op)
        async with self._autocommit.connect() as conn:
            return await conn.run_sync(op)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._engine.dispose()


def make_runner(url: sa.URL, *, connect_timeout: float, operation_timeout: float) -> Runner:
    if url.get_backend_name() == "sqlite":
        return SQLiteRunner(url, busy_timeout=min(connect_timeout, operation_timeout))
    return PostgresRunner(url, connect_timeout=connect_timeout, operation_timeout=operation_timeout)
