"""Several instances on one ledger: no job is ever handed to two of them."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest
import sqlalchemy as sa

from finalizer.jobs import Step
from finalizer.ledger import JobRecord, Ledger
from finalizer.ledger.schema import jobs
from tests.support.ledger import backdate, make_spec

pytestmark = pytest.mark.anyio

JOBS = 240
ADOPTERS = 4


async def _seed_dead_owner(url: str) -> None:
    async with await Ledger.connect(url) as ledger:
        dead = await ledger.register_instance("dead", 1)
        for n in range(JOBS):
            await ledger.submit(make_spec(n), dead)
        await backdate(ledger, dead)


async def test_concurrent_adopt_stale_never_returns_the_same_job(ledger_url: str) -> None:
    """Separate engines (as separate processes would have) adopt in small batches, all at once."""
    await _seed_dead_owner(ledger_url)
    ledgers = [await Ledger.connect(ledger_url, operation_timeout=30) for _ in range(ADOPTERS)]
    taken: dict[str, list[JobRecord]] = {}
    try:
        owners = [await ledger.register_instance(f"adopter-{i}", i) for i, ledger in enumerate(ledgers)]

        async def adopt(ledger: Ledger, owner: str) -> None:
            got = taken.setdefault(owner, [])
            while True:
                batch = await ledger.adopt_stale(owner, threshold=30, limit=7)
                if not batch:
                    return
                got.extend(batch)

        async with anyio.create_task_group() as tg:
            for ledger, owner in zip(ledgers, owners, strict=True):
                tg.start_soon(adopt, ledger, owner)

        counts = Counter(rec.key for recs in taken.values() for rec in recs)
        assert len(counts) == JOBS
        assert set(counts.values()) == {1}, [k for k, c in counts.items() if c > 1]
        assert sum(1 for recs in taken.values() if recs) >= 2 or ledgers[0].dialect == "sqlite"
        query = sa.select(jobs.c.key, jobs.c.owner, jobs.c.epoch)
        rows = await ledgers[0].run_sql(lambda conn: conn.execute(query).all())
        final = {key: (owner, epoch) for key, owner, epoch in rows}
        for owner, recs in taken.items():
            for rec in recs:
                assert final[rec.key] == (owner, 2)
    finally:
        for ledger in ledgers:
            await ledger.aclose()


async def test_concurrent_submit_of_one_job_has_one_owner(ledger_url: str) -> None:
    ledgers = [await Ledger.connect(ledger_url) for _ in range(3)]
    try:
        owners = [await ledger.register_instance(f"i{i}", i) for i, ledger in enumerate(ledgers)]
        spec = make_spec(7)
        results: dict[str, JobRecord] = {}

        async def submit(ledger: Ledger, owner: str) -> None:
            results[owner] = await ledger.submit(spec, owner)

        async with anyio.create_task_group() as tg:
            for ledger, owner in zip(ledgers, owners, strict=True):
                tg.start_soon(submit, ledger, owner)
        assert len({(r.owner, r.epoch) for r in results.values()}) == 1
        acting = [owner for owner, rec in results.items() if rec.owner == owner]
        assert len(acting) == 1  # exactly one caller may act: the others see a live owner
        assert results[acting[0]].step is Step.REGISTERED
        assert results[acting[0]].epoch == 1
    finally:
        for ledger in ledgers:
            await ledger.aclose()


async def test_a_locked_instance_row_still_counts_as_alive(pg_url: str) -> None:
    """The liveness read takes no SKIP LOCKED: a live owner whose row is locked (say, mid-heartbeat)
    is not taken for dead, and adoption does not wait for that lock either."""
    import psycopg2  # type: ignore[import-untyped]

    async with await Ledger.connect(pg_url, operation_timeout=60) as ledger:
        live = await ledger.register_instance("live", 1)
        thief = await ledger.register_instance("thief", 2)
        rec = await ledger.submit(make_spec(1), live)
        blocker = psycopg2.connect(pg_url.replace("+asyncpg", ""))
        try:
            with blocker.cursor() as cur:  # an open transaction holding the live instance's row lock
                cur.execute("SELECT id FROM kpof_instances WHERE id = %s FOR UPDATE", (live,))
            with anyio.fail_after(10):  # the lock is held to the end: a read that waited for it never ends
                assert await ledger.adopt_stale(thief, threshold=30, limit=10) == []
                seen = await ledger.submit(make_spec(1), thief)
            assert (seen.owner, seen.epoch) == (live, rec.epoch)
        finally:
            blocker.rollback()
            blocker.close()
