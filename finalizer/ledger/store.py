"""``Ledger``: the only code that touches the finalizer's database.

Fencing: every job write is a compare-and-set on ``(owner, epoch)``. A job changes hands only
when its owner is dead (heartbeat older than the threshold, or unregistered) — then the taker
bumps the epoch, so the old owner's next write matches no row and raises ``JobLostError``.
The liveness read of ``kpof_instances`` never uses ``SKIP LOCKED``: a live instance must never
be taken for dead because its row happened to be locked.

Bounded: every operation runs under ``operation_timeout`` and fails with
``LedgerUnavailableError`` when the database cannot answer in time. Each operation is one sync
function of a connection, run by the database's runner (``engines.py``); the statements are
built once per dialect (``queries.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import anyio
import sqlalchemy as sa

from finalizer.exceptions import ConfigurationError, JobLostError, LedgerError
from finalizer.jobs import JobSpec, Outcome, Step
from finalizer.ledger.dialect import normalize_url, translate_errors
from finalizer.ledger.engines import Runner, make_runner
from finalizer.ledger.migrations import migrate, schema_version
from finalizer.ledger.queries import Queries, clock_params
from finalizer.ledger.records import InstanceRecord, JobRecord, instance_from_row, job_from_row
from finalizer.ledger.schema import STEP_COLUMNS, jobs

T = TypeVar("T")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave the XCom as it is" (``None`` is a real XCom value: the task returned nothing).
UNSET: Final = _Unset()


class Ledger:
    """Durable job and instance records on SQLite or PostgreSQL. Create with ``await Ledger.connect``."""

    def __init__(
        self, runner: Runner, url: sa.URL, *, operation_timeout: float, stale_threshold: float
    ) -> None:
        self._runner = runner
        self._url = url
        self._dialect = url.get_backend_name()
        self._operation_timeout = operation_timeout
        self._q = Queries(self._dialect)
        #: Default heartbeat age past which an owner counts as dead (``submit``).
        self.stale_threshold = stale_threshold

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

        ``url``: ``sqlite:///path`` or ``postgresql://…`` (drivers are chosen for you). Raises
        ``LedgerUnavailableError`` within about ``connect_timeout`` when the database cannot be
        reached, ``ConfigurationError`` for a bad URL or timeout, ``LedgerError`` for a schema
        newer than this code. ``operation_timeout`` bounds every later call.
        """
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("operation_timeout", operation_timeout),
            ("stale_threshold", stale_threshold),
        ):
            if not value > 0:
                raise ConfigurationError(f"ledger {name} must be > 0, got {value!r}")
        parsed = normalize_url(url)
        runner = make_runner(parsed, connect_timeout=connect_timeout, operation_timeout=operation_timeout)
        ledger = cls(runner, parsed, operation_timeout=operation_timeout, stale_threshold=stale_threshold)
        try:
            await ledger._run(
                "connect/migrate", migrate, limit=connect_timeout + operation_timeout, atomic=True
            )
        except BaseException:
            await runner.aclose()
            raise
        return ledger

    async def aclose(self) -> None:
        """Close every connection."""
        await self._runner.aclose()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    async def _run(
        self, what: str, op: Callable[[sa.Connection], T], *, limit: float | None = None, atomic: bool = False
    ) -> T:
        """``op`` bounded in time, with errors translated (``atomic``: in one transaction)."""
        async with translate_errors(what, self._url):
            with anyio.fail_after(limit or self._operation_timeout):
                return await self._runner.run(op, atomic=atomic)

    async def run_sql(self, op: Callable[[sa.Connection], T]) -> T:
        """Run ``op(connection)`` in one ledger transaction: diagnostics and tests only."""
        return await self._run("run_sql", op, atomic=True)

    async def schema_version(self) -> int:
        """The schema version the database is at."""
        return await self._run("schema_version", schema_version)

    # ---------------------------------------------------------------- instances

    async def register_instance(self, host: str, pid: int) -> str:
        """Record this process as a live instance; returns its id (the job ``owner``)."""
        instance_id = uuid.uuid4().hex
        params = {"i": instance_id, "h": host, "p": pid, **clock_params()}
        await self._run("register_instance", lambda conn: conn.execute(self._q.register, params))
        return instance_id

    async def heartbeat(self, instance_id: str) -> None:
        """Prove we are alive. Raises ``LedgerError`` if the instance is not registered."""
        params = {"i": instance_id, **clock_params()}
        updated = await self._run("heartbeat", lambda conn: conn.execute(self._q.heartbeat, params).rowcount)
        if updated == 0:
            raise LedgerError(f"instance {instance_id} is not registered (unregistered or never was)")

    async def unregister(self, instance_id: str) -> None:
        """Remove the instance: its unfinished jobs become adoptable at once (no waiting for staleness)."""
        await self._run("unregister", lambda conn: conn.execute(self._q.unregister, {"i": instance_id}))

    async def instances(self) -> list[InstanceRecord]:
        """Every registered instance (health and diagnostics)."""

        def op(conn: sa.Connection) -> list[InstanceRecord]:
            return [instance_from_row(row) for row in conn.execute(self._q.instances).mappings()]

        return await self._run("instances", op)

    # ---------------------------------------------------------------- jobs

    async def submit(self, spec: JobSpec, owner: str, *, stale_threshold: float | None = None) -> JobRecord:
        """Insert the job if absent, owned by ``owner``; else return or adopt the existing one.

        An existing job owned by a live instance other than ``owner`` (or already DONE, or handed
        over to the worker) comes back as is: the caller must check ``rec.owner == owner`` and
        ``rec.handed_over_at`` before acting. One whose owner is dead
        (or absent) is adopted: epoch + 1.
        """
        threshold = self.stale_threshold if stale_threshold is None else stale_threshold
        values = {
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
            "xcom_value": None,
            "xcom_purged": False,
            "outcome": None,
            "error": None,
        }
        q = self._q

        def op(conn: sa.Connection) -> JobRecord:
            params = {f"v_{k}": v for k, v in values.items()} | clock_params(threshold)
            row = conn.execute(q.insert_job, params).mappings().first()
            if row is not None:
                return job_from_row(row, spec)
            rec = job_from_row(conn.execute(q.get_job, {"k": spec.key}).mappings().one())
            if rec.done or rec.owner == owner or rec.handed_over_at is not None:
                return rec
            if rec.owner is not None and conn.execute(q.owner_alive, {"o": rec.owner, **params}).scalar():
                return rec
            take = {"k": rec.key, "o": rec.owner, "e": rec.epoch, "new_owner": owner, **params}
            adopted = conn.execute(q.take_over, take).mappings().first()
            if adopted is not None:
                return job_from_row(adopted, rec.spec)
            return job_from_row(conn.execute(q.get_job, {"k": spec.key}).mappings().one())

        return await self._run("submit", op)

    async def adopt_stale(self, owner: str, *, threshold: float, limit: int) -> list[JobRecord]:
        """Take over up to ``limit`` unfinished jobs whose owner is dead; each gets epoch + 1.

        One atomic ``UPDATE … WHERE key IN (SELECT … FOR UPDATE OF jobs SKIP LOCKED) RETURNING``:
        two adopters never get the same job. On SQLite the transaction holds the write lock from
        its ``BEGIN IMMEDIATE``. Dead = heartbeat older than ``threshold`` seconds, unregistered,
        or released (no owner).
        """
        if limit <= 0:
            return []
        params = {"me": owner, "limit": limit, **clock_params(threshold)}

        def op(conn: sa.Connection) -> list[JobRecord]:
            return [job_from_row(row) for row in conn.execute(self._q.adopt_stale, params).mappings().all()]

        return await self._run("adopt_stale", op)

    async def advance(
        self,
        rec: JobRecord,
        step: Step,
        *,
        xcom: Any = UNSET,
        outcome: Outcome | None = None,
        error: str | None = None,
        reached: Mapping[Step, datetime] | None = None,
    ) -> JobRecord:
        """Record that ``rec`` reached ``step`` (and the XCom / outcome / error, when given).

        ``reached`` carries earlier steps passed since the last write with the finalizer's clock
        (one write for several idempotent steps); ``step`` itself takes the database clock.

        Compare-and-set on ``(owner, epoch)``: if another instance took the job, raises
        ``JobLostError`` and writes nothing. ``xcom`` is the parsed JSON value (``None`` = the
        sidecar had no XCom); leave it ``UNSET`` to keep what is stored. The first time a step is
        reached is kept. Going back to an earlier step is a programming error (``ValueError``).
        """
        if step < rec.step:
            raise ValueError(f"job {rec.key}: cannot go back from {rec.step.name} to {step.name}")
        if rec.owner is None:
            raise JobLostError(f"job {rec.key} has no owner: adopt it before acting on it")
        params: dict[str, Any] = {"k": rec.key, "o": rec.owner, "e": rec.epoch, **clock_params()}
        has_xcom = not isinstance(xcom, _Unset)
        if has_xcom:
            try:
                params["v_xcom"] = json.dumps(xcom)
            except (TypeError, ValueError) as exc:
                raise LedgerError(f"job {rec.key}: XCom value is not JSON-serialisable ({exc})") from exc
        if outcome is not None:
            params["v_outcome"] = outcome.model_dump_json()
        if error is not None:
            params["v_error"] = error
        times = dict(reached or {})
        times.pop(step, None)
        if any(s > step for s in times):
            raise ValueError(f"job {rec.key}: steps reached after {step.name} cannot be recorded with it")
        params.update({f"t_{STEP_COLUMNS[s]}": at for s, at in times.items()})
        earlier = frozenset(times)
        statement = self._q.advance(
            step, reached=earlier, xcom=has_xcom, outcome=outcome is not None, error=error is not None
        )

        def op(conn: sa.Connection) -> JobRecord | None:
            row = conn.execute(statement, params).mappings().first()
            return job_from_row(row, rec.spec) if row is not None else None

        updated = await self._run("advance", op)
        if updated is None:
            raise JobLostError(
                f"job {rec.key} is no longer ours (owner {rec.owner}, epoch {rec.epoch} superseded): "
                "stop acting on it"
            )
        return updated

    async def hand_over(self, key: str, reason: str) -> JobRecord | None:
        """Mark the job handed to the worker path (the trigger yielded the classic event).

        From then on no instance adopts, resumes or writes it: ``adopt_stale`` and ``submit``
        skip it, and every fenced write fails (epoch + 1, so a write still in flight from its
        owner — one held by a black-holed connection — matches no row). ``reason`` is kept as
        the job's error. None when there is no such job or it is already DONE.
        """
        params = {"k": key, "reason": reason[:2000], **clock_params()}

        def op(conn: sa.Connection) -> JobRecord | None:
            row = conn.execute(self._q.hand_over, params).mappings().first()
            return job_from_row(row) if row is not None else None

        return await self._run("hand_over", op)

    async def release(self, rec: JobRecord) -> JobRecord:
        """Give the job up (drain): no owner, epoch + 1, so any live instance may adopt it at once."""
        if rec.owner is None:
            raise JobLostError(f"job {rec.key} has no owner: nothing to release")
        params = {"k": rec.key, "o": rec.owner, "e": rec.epoch, **clock_params()}

        def op(conn: sa.Connection) -> JobRecord | None:
            row = conn.execute(self._q.release, params).mappings().first()
            return job_from_row(row, rec.spec) if row is not None else None

        released = await self._run("release", op)
        if released is None:
            raise JobLostError(f"job {rec.key} is no longer ours: nothing to release")
        return released

    async def newer_try(self, spec: JobSpec) -> int | None:
        """The highest try number above ``spec``'s that the ledger holds for the same task instance
        (dag, task, run, map index), or None: a newer try means ``spec``'s try is over (adopters)."""
        c = jobs.c
        statement = sa.select(sa.func.max(c.try_number)).where(
            c.dag_id == spec.ti.dag_id,
            c.task_id == spec.ti.task_id,
            c.run_id == spec.ti.run_id,
            c.map_index == spec.ti.map_index,
            c.try_number > spec.ti.try_number,
        )

        def op(conn: sa.Connection) -> int | None:
            found = conn.execute(statement).scalar()
            return None if found is None else int(found)

        return await self._run("newer_try", op)

    async def get(self, key: str) -> JobRecord | None:
        """The job with this key, or None."""

        def op(conn: sa.Connection) -> JobRecord | None:
            row = conn.execute(self._q.get_job, {"k": key}).mappings().first()
            return job_from_row(row) if row is not None else None

        return await self._run("get", op)

    async def unfinished(self, *, owner: str | None = None, limit: int = 1000) -> list[JobRecord]:
        """Jobs not yet DONE (optionally of one owner), oldest first."""
        params = {"any_owner": owner is None, "o": owner, "limit": limit}

        def op(conn: sa.Connection) -> list[JobRecord]:
            return [job_from_row(row) for row in conn.execute(self._q.unfinished, params).mappings().all()]

        return await self._run("unfinished", op)

    async def purge_payloads(self, older_than: timedelta) -> int:
        """Drop XCom payloads already pushed to Airflow and untouched for ``older_than``.

        Payloads that were not pushed yet are never purged: they are the only copy.
        """
        params = clock_params(older_than.total_seconds())
        return int(
            await self._run(
                "purge_payloads", lambda conn: conn.execute(self._q.purge_payloads, params).rowcount
            )
        )

    async def delete_finished(self, older_than: timedelta) -> int:
        """Delete DONE jobs untouched for ``older_than`` (bounded table size)."""
        params = clock_params(older_than.total_seconds())
        result = await self._run(
            "delete_finished", lambda conn: conn.execute(self._q.delete_finished, params)
        )
        return int(result.rowcount)
