"""``Ledger``: the only code that touches the finalizer's database.

Fencing: every job write is a compare-and-set on ``(owner, epoch)``. A job changes hands only
when its owner is dead (heartbeat older than the threshold, or unregistered) — then the taker
bumps the epoch, so the old owner's next write matches no row and raises ``JobLostError``.
The liveness read of ``kpof_instances`` never uses ``SKIP LOCKED``: a live instance must never
be taken for dead because its row happened to be locked.

Bounded: every operation runs under ``operation_timeout`` and fails with
``LedgerUnavailableError`` when the database cannot answer in time. SQLite operations of one
``Ledger`` are serialised in-process (SQLite has one writer anyway); other processes wait on
``busy_timeout``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Final

import anyio
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from finalizer.exceptions import ConfigurationError, JobLostError, LedgerError
from finalizer.jobs import JobSpec, Outcome, Step
from finalizer.ledger.dialect import ago_expr, create_engine, normalize_url, now_expr, translate_errors
from finalizer.ledger.migrations import migrate
from finalizer.ledger.records import InstanceRecord, JobRecord, instance_from_row, job_from_row
from finalizer.ledger.schema import STEP_COLUMNS, instances, jobs


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave the XCom as it is" (``None`` is a real XCom value: the task returned nothing).
UNSET: Final = _Unset()


class Ledger:
    """Durable job and instance records on SQLite or PostgreSQL. Create with ``await Ledger.connect``."""

    def __init__(
        self,
        engine: AsyncEngine,
        url: sa.URL,
        *,
        operation_timeout: float,
        stale_threshold: float,
    ) -> None:
        self._engine = engine
        self._url = url
        self._dialect = url.get_backend_name()
        self._operation_timeout = operation_timeout
        self.stale_threshold = stale_threshold
        self._serial: anyio.Lock | None = anyio.Lock() if self._dialect == "sqlite" else None

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        connect_timeout: float = 10.0,
        operation_timeout: float = 30.0,
        stale_threshold: float = 30.0,
    ) -> Ledger:
        """Open the ledger and bring its schema up to date.

        ``url``: ``sqlite:///path`` / ``sqlite+aiosqlite:///path`` or ``postgresql://…`` (the async
        driver is chosen for you). Raises ``LedgerUnavailableError`` within about
        ``connect_timeout`` when the database cannot be reached, ``ConfigurationError`` for a bad
        URL or timeout, ``LedgerError`` for a schema newer than this code.
        """
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("operation_timeout", operation_timeout),
            ("stale_threshold", stale_threshold),
        ):
            if not value > 0:
                raise ConfigurationError(f"ledger {name} must be > 0, got {value!r}")
        parsed = normalize_url(url)
        engine = create_engine(parsed, connect_timeout=connect_timeout, operation_timeout=operation_timeout)
        ledger = cls(engine, parsed, operation_timeout=operation_timeout, stale_threshold=stale_threshold)
        try:
            async with ledger._tx("connect/migrate", limit=connect_timeout + operation_timeout) as conn:
                await migrate(conn)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await engine.dispose()
            raise
        return ledger

    async def aclose(self) -> None:
        """Close every pooled connection."""
        with anyio.CancelScope(shield=True):
            await self._engine.dispose()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (tests and diagnostics only: go through the methods)."""
        return self._engine

    @contextlib.asynccontextmanager
    async def _tx(self, what: str, *, limit: float | None = None) -> AsyncIterator[AsyncConnection]:
        """One transaction, bounded in time, with errors translated."""
        async with translate_errors(what, self._url):
            with anyio.fail_after(limit or self._operation_timeout):
                async with contextlib.AsyncExitStack() as stack:
                    if self._serial is not None:
                        await stack.enter_async_context(self._serial)
                    conn = await stack.enter_async_context(self._engine.begin())
                    yield conn

    def _now(self) -> sa.ColumnElement[Any]:
        return now_expr(self._dialect)

    def _live(self, owner: sa.ColumnElement[Any], threshold: float) -> sa.Exists:
        """EXISTS a live instance with id ``owner`` (plain read: no locks, no SKIP LOCKED)."""
        return sa.exists().where(
            instances.c.id == owner, instances.c.heartbeat >= ago_expr(self._dialect, threshold)
        )

    # ---------------------------------------------------------------- instances

    async def register_instance(self, host: str, pid: int) -> str:
        """Record this process as a live instance; returns its id (the job ``owner``)."""
        instance_id = uuid.uuid4().hex
        async with self._tx("register_instance") as conn:
            now = self._now()
            await conn.execute(
                instances.insert().values(id=instance_id, host=host, pid=pid, started=now, heartbeat=now)
            )
        return instance_id

    async def heartbeat(self, instance_id: str) -> None:
        """Prove we are alive. Raises ``LedgerError`` if the instance is not registered."""
        async with self._tx("heartbeat") as conn:
            result = await conn.execute(
                instances.update().where(instances.c.id == instance_id).values(heartbeat=self._now())
            )
        if result.rowcount == 0:
            raise LedgerError(f"instance {instance_id} is not registered (unregistered or never was)")

    async def unregister(self, instance_id: str) -> None:
        """Remove the instance: its unfinished jobs become adoptable at once (no waiting for staleness)."""
        async with self._tx("unregister") as conn:
            await conn.execute(instances.delete().where(instances.c.id == instance_id))

    async def instances(self) -> list[InstanceRecord]:
        """Every registered instance (health and diagnostics)."""
        async with self._tx("instances") as conn:
            rows = (await conn.execute(sa.select(instances).order_by(instances.c.started))).mappings()
            return [instance_from_row(row) for row in rows]

    # ---------------------------------------------------------------- jobs

    def _insert(self) -> Any:
        return (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(jobs)

    async def submit(self, spec: JobSpec, owner: str, *, stale_threshold: float | None = None) -> JobRecord:
        """Insert the job if absent, owned by ``owner``; else return or adopt the existing one.

        An existing job owned by a live instance other than ``owner`` (or already DONE) comes back
        as is: the caller must check ``rec.owner == owner`` before acting. One whose owner is dead
        is adopted (epoch + 1).
        """
        threshold = self.stale_threshold if stale_threshold is None else stale_threshold
        now = self._now()
        values: dict[str, Any] = {
            "key": spec.key,
            "ti_id": spec.ti.id,
            "dag_id": spec.ti.dag_id,
            "task_id": spec.ti.task_id,
            "run_id": spec.ti.run_id,
            "map_index": spec.ti.map_index,
            "try_number": spec.ti.try_number,
            "cluster_key": spec.cluster.key,
            "namespace": spec.pod.namespace,
            "pod_name": spec.pod.name,
            "pod_uid": spec.pod.uid,
            "spec": spec.model_dump_json(),
            "step": int(Step.REGISTERED),
            "owner": owner,
            "epoch": 1,
            "xcom_read": False,
            "xcom_purged": False,
            STEP_COLUMNS[Step.REGISTERED]: now,
            "created_at": now,
            "updated_at": now,
        }
        async with self._tx("submit") as conn:
            insert = self._insert().values(**values).on_conflict_do_nothing(index_elements=["key"])
            row = (await conn.execute(insert.returning(jobs))).mappings().first()
            if row is not None:
                return job_from_row(row)
            rec = job_from_row(
                (await conn.execute(sa.select(jobs).where(jobs.c.key == spec.key))).mappings().one()
            )
            if rec.done or rec.owner == owner:
                return rec
            if rec.owner is not None:
                alive = (await conn.execute(sa.select(self._live(sa.literal(rec.owner), threshold)))).scalar()
                if alive:
                    return rec
            adopted = (
                (
                    await conn.execute(
                        self._fenced(rec)
                        .values(owner=owner, epoch=jobs.c.epoch + 1, updated_at=self._now())
                        .returning(jobs)
                    )
                )
                .mappings()
                .first()
            )
            if adopted is not None:
                return job_from_row(adopted)
            row = (await conn.execute(sa.select(jobs).where(jobs.c.key == spec.key))).mappings().one()
            return job_from_row(row)

    def _fenced(self, rec: JobRecord) -> sa.Update:
        """UPDATE of exactly this job, only while ``(owner, epoch)`` still match ``rec``."""
        owner_matches = jobs.c.owner.is_(None) if rec.owner is None else jobs.c.owner == rec.owner
        return jobs.update().where(jobs.c.key == rec.key, owner_matches, jobs.c.epoch == rec.epoch)

    async def adopt_stale(self, owner: str, *, threshold: float, limit: int) -> list[JobRecord]:
        """Take over up to ``limit`` unfinished jobs whose owner is dead; each gets epoch + 1.

        One atomic ``UPDATE … WHERE key IN (SELECT … FOR UPDATE OF jobs SKIP LOCKED) RETURNING``:
        two adopters never get the same job. On SQLite the transaction holds the write lock from
        its ``BEGIN IMMEDIATE``.
        """
        if limit <= 0:
            return []
        stale = sa.and_(
            jobs.c.step < int(Step.DONE),
            sa.or_(jobs.c.owner.is_(None), jobs.c.owner != owner),
            ~self._live(jobs.c.owner, threshold),
        )
        candidates = (
            sa.select(jobs.c.key)
            .where(stale)
            .order_by(jobs.c.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=jobs)
        )
        statement = (
            jobs.update()
            .where(jobs.c.key.in_(candidates), jobs.c.step < int(Step.DONE))
            .values(owner=owner, epoch=jobs.c.epoch + 1, updated_at=self._now())
            .returning(jobs)
        )
        async with self._tx("adopt_stale") as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [job_from_row(row) for row in rows]

    async def advance(
        self,
        rec: JobRecord,
        step: Step,
        *,
        xcom: Any = UNSET,
        outcome: Outcome | None = None,
        error: str | None = None,
    ) -> JobRecord:
        """Record that ``rec`` reached ``step`` (and the XCom / outcome / error, when given).

        Compare-and-set on ``(owner, epoch)``: if another instance took the job, raises
        ``JobLostError`` and writes nothing. ``xcom`` is the parsed JSON value (``None`` = the
        sidecar had no XCom); leave it ``UNSET`` to keep what is stored. The first time a step is
        reached is kept. Going back to an earlier step is a programming error (``ValueError``).
        """
        if step < rec.step:
            raise ValueError(f"job {rec.key}: cannot go back from {rec.step.name} to {step.name}")
        if rec.owner is None:
            raise JobLostError(f"job {rec.key} has no owner: adopt it before acting on it")
        now = self._now()
        column = STEP_COLUMNS[step]
        values: dict[str, Any] = {
            "step": int(step),
            column: sa.func.coalesce(jobs.c[column], now),
            "updated_at": now,
        }
        if not isinstance(xcom, _Unset):
            try:
                values["xcom_value"] = json.dumps(xcom)
            except (TypeError, ValueError) as exc:
                raise LedgerError(f"job {rec.key}: XCom value is not JSON-serialisable ({exc})") from exc
            values["xcom_read"] = True
        if outcome is not None:
            values["outcome"] = outcome.model_dump_json()
        if error is not None:
            values["error"] = error
        async with self._tx("advance") as conn:
            row = (await conn.execute(self._fenced(rec).values(**values).returning(jobs))).mappings().first()
        if row is None:
            raise JobLostError(
                f"job {rec.key} is no longer ours (owner {rec.owner}, epoch {rec.epoch} superseded): "
                "stop acting on it"
            )
        return job_from_row(row)

    async def release(self, rec: JobRecord) -> JobRecord:
        """Give the job up (drain): no owner, epoch + 1, so any live instance may adopt it at once."""
        async with self._tx("release") as conn:
            statement = self._fenced(rec).values(owner=None, epoch=jobs.c.epoch + 1, updated_at=self._now())
            row = (await conn.execute(statement.returning(jobs))).mappings().first()
        if row is None:
            raise JobLostError(f"job {rec.key} is no longer ours: nothing to release")
        return job_from_row(row)

    async def get(self, key: str) -> JobRecord | None:
        """The job with this key, or None."""
        async with self._tx("get") as conn:
            row = (await conn.execute(sa.select(jobs).where(jobs.c.key == key))).mappings().first()
        return job_from_row(row) if row is not None else None

    async def unfinished(self, *, owner: str | None = None, limit: int = 1000) -> list[JobRecord]:
        """Jobs not yet DONE (optionally of one owner), oldest first."""
        query = sa.select(jobs).where(jobs.c.step < int(Step.DONE))
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        async with self._tx("unfinished") as conn:
            rows = (await conn.execute(query.order_by(jobs.c.created_at).limit(limit))).mappings().all()
        return [job_from_row(row) for row in rows]

    async def purge_payloads(self, older_than: timedelta) -> int:
        """Drop XCom payloads already pushed to Airflow and untouched for ``older_than``.

        Payloads that were not pushed yet are never purged: they are the only copy.
        """
        statement = (
            jobs.update()
            .where(
                jobs.c.xcom_value.is_not(None),
                jobs.c.step >= int(Step.XCOM_PUSHED),
                jobs.c.updated_at < ago_expr(self._dialect, older_than.total_seconds()),
            )
            .values(xcom_value=None, xcom_purged=True)
        )
        async with self._tx("purge_payloads") as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)

    async def delete_finished(self, older_than: timedelta) -> int:
        """Delete DONE jobs untouched for ``older_than`` (bounded table size)."""
        statement = jobs.delete().where(
            jobs.c.step >= int(Step.DONE),
            jobs.c.updated_at < ago_expr(self._dialect, older_than.total_seconds()),
        )
        async with self._tx("delete_finished") as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)
