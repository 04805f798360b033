"""Crash, don't hang: an unreachable or stuck ledger fails fast with LedgerUnavailableError.

The time bounds prove a configured timeout was honoured rather than a default (10 s connect, 30 s
operation, SQLite's own 5 s): each allows 10x the configured timeout and stays under the default,
so a loaded machine does not fail them and a timeout that is ignored still does.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finalizer.exceptions import LedgerUnavailableError
from finalizer.ledger import Ledger
from tests.support.ledger import make_spec

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


async def _warm_up_the_driver() -> None:
    """Import asyncpg and the dialect once, untimed: on a cold checkout the first import alone can
    take seconds, which is not what the bounds below are about."""
    with pytest.raises(LedgerUnavailableError):
        await Ledger.connect(f"postgresql://kpof@127.0.0.1:{_closed_port()}/ledger", connect_timeout=1)


async def test_closed_port_fails_fast_with_a_clear_error() -> None:
    await _warm_up_the_driver()
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError, match=rf"127\.0\.0\.1:{port}") as info:
        await Ledger.connect(f"postgresql://kpof:secret@127.0.0.1:{port}/ledger", connect_timeout=60)
    assert time.monotonic() - started < 10  # a refused connection is final: no wait for the timeout
    assert "secret" not in str(info.value)
    assert info.value.__cause__ is not None


async def test_silent_server_fails_within_the_connect_timeout(blackhole_port: int) -> None:
    await _warm_up_the_driver()
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError):
        await Ledger.connect(f"postgresql://kpof@127.0.0.1:{blackhole_port}/ledger", connect_timeout=0.5)
    assert time.monotonic() - started < 5


async def test_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LedgerUnavailableError, match="unable to open database file"):
        await Ledger.connect(f"sqlite:///{tmp_path / 'missing-dir' / 'ledger.sqlite3'}", connect_timeout=1)


async def test_a_stuck_postgres_operation_times_out(pg_url: str) -> None:
    """A table lock held elsewhere must not hang the loop past operation_timeout."""
    import psycopg2  # type: ignore[import-untyped]

    async with await Ledger.connect(pg_url, operation_timeout=1) as ledger:
        me = await ledger.register_instance("h", 1)
        rec = await ledger.submit(make_spec(1), me)
        blocker = psycopg2.connect(pg_url.replace("+asyncpg", ""))
        try:
            with blocker.cursor() as cur:  # psycopg2 opens the transaction implicitly
                cur.execute("LOCK TABLE kpof_jobs IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(LedgerUnavailableError, match=r"timed out|canceling statement"):
                await ledger.get(rec.key)
            assert time.monotonic() - started < 10
        finally:
            blocker.rollback()
            blocker.close()
        assert await ledger.get(rec.key) == rec  # the pool recovered


async def test_a_stuck_sqlite_writer_times_out(tmp_path: Path) -> None:
    """Another process holding the write lock: bounded by busy_timeout, then unavailable."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    # busy_timeout = min(connect_timeout, operation_timeout) = 0.5 s
    async with await Ledger.connect(url, connect_timeout=0.5, operation_timeout=30) as ledger:
        other = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            with pytest.raises(LedgerUnavailableError, match="database is locked"):
                await ledger.register_instance("h", 1)
            assert time.monotonic() - started < 5
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await ledger.register_instance("h", 1)
