"""SQLite group commit: batched operations stay isolated, and cancelled ones never run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from finalizer.exceptions import LedgerError
from finalizer.ledger import Ledger
from finalizer.ledger.schema import instances
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


async def _instance_ids(ledger: Ledger) -> set[str]:
    return {i.id for i in await ledger.instances()}


async def test_a_failing_operation_in_a_batch_fails_alone(tmp_path: Path) -> None:
    async with await Ledger.connect(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        existing = await ledger.register_instance("h", 1)
        duplicate = instances.insert().values(
            id=existing,
            host="dup",
            pid=2,
            started=sa.func.current_timestamp(),
            heartbeat=sa.func.current_timestamp(),
        )
        registered: list[str] = []
        failures: list[BaseException] = []

        async def register(n: int) -> None:
            registered.append(await ledger.register_instance(f"h{n}", n))

        async def clash() -> None:
            try:
                await ledger.run_sql(lambda conn: conn.execute(duplicate))
            except LedgerError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for n in range(30):
                tg.start_soon(register, n)
                tg.start_soon(clash)
        assert len(failures) == 30
        assert all("IntegrityError" in str(f) for f in failures)
        assert await _instance_ids(ledger) == {existing, *registered}
        assert len(registered) == 30


async def test_an_operation_cancelled_while_queued_never_runs(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.connect(f"sqlite:///{path}", connect_timeout=5, operation_timeout=5) as ledger:
        before = await _instance_ids(ledger)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ledger.register_instance, "blocked", 1)  # runs, waits on busy_timeout
                # Poll (no event for it) until the first batch is in the worker thread.
                runner = ledger._runner
                await eventually(runner._lock.locked, 5, interval=0.01)  # type: ignore[attr-defined]
                with anyio.move_on_after(0.2) as scope:
                    await ledger.register_instance("cancelled", 2)  # queued behind the lock
                assert scope.cancelled_caught
                other.execute("ROLLBACK")
        finally:
            other.close()
        hosts = {i.host for i in await ledger.instances() if i.id not in before}
        assert hosts == {"blocked"}
