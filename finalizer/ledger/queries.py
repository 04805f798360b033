"""Every ledger statement, built once per dialect with bind parameters.

Building a SQLAlchemy expression costs more than SQLite takes to run it (the coercions of an
UPDATE … RETURNING of 30 columns); these are built once and executed with a parameter dict.
The clock parameters come from ``clock_params``: on PostgreSQL statements use the server's
``clock_timestamp()`` and ignore ``now``/``cutoff``; on SQLite they bind them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from finalizer.jobs import Step
from finalizer.ledger.schema import STEP_COLUMNS, instances, jobs

P = sa.bindparam
TS = sa.DateTime(timezone=True)
#: Every column but the spec: what updates read back (the caller already holds the spec).
NO_SPEC = tuple(c for c in jobs.c if c.name != "spec")


def clock_params(threshold: float = 0.0) -> dict[str, Any]:
    """``now`` and ``cutoff`` (now - threshold) for SQLite; ``age`` (an interval) for PostgreSQL."""
    now = datetime.now(UTC)
    age = timedelta(seconds=threshold)
    return {"now": now, "cutoff": now - age, "age": age}


class Queries:
    """The statements of one dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._advance_cache: dict[tuple[Step, frozenset[Step], bool, bool, bool], sa.Update] = {}
        pg = dialect == "postgresql"
        clock = sa.func.clock_timestamp(type_=TS)
        self.now: sa.ColumnElement[datetime] = clock if pg else P("now", type_=TS)
        self.cutoff: sa.ColumnElement[datetime] = (
            clock - P("age", type_=sa.Interval()) if pg else P("cutoff", type_=TS)
        )

    def live(self, owner: sa.ColumnElement[Any]) -> sa.Exists:
        """EXISTS a live instance with id ``owner`` — a plain read: no locks, no SKIP LOCKED."""
        return sa.exists().where(instances.c.id == owner, instances.c.heartbeat >= self.cutoff)

    def _fenced(self) -> sa.Update:
        """UPDATE of one job only while its (owner, epoch) still match (params ``k``, ``o``, ``e``)
        and it was not handed to the worker."""
        return jobs.update().where(
            jobs.c.key == P("k"),
            jobs.c.owner == P("o"),
            jobs.c.epoch == P("e"),
            jobs.c.handed_over_at.is_(None),
        )

    # instances
    @cached_property
    def register(self) -> sa.Insert:
        return instances.insert().values(
            id=P("i"), host=P("h"), pid=P("p"), started=self.now, heartbeat=self.now
        )

    @cached_property
    def heartbeat(self) -> sa.Update:
        return instances.update().where(instances.c.id == P("i")).values(heartbeat=self.now)

    @cached_property
    def unregister(self) -> sa.Delete:
        return instances.delete().where(instances.c.id == P("i"))

    @cached_property
    def instances(self) -> sa.Select[Any]:
        return sa.select(instances).order_by(instances.c.started)

    # jobs
    @cached_property
    def insert_job(self) -> Any:
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(jobs)
        columns = [c.name for c in jobs.c if c.name not in {*STEP_COLUMNS.values(), "handed_over_at"}]
        values: dict[str, Any] = {name: P(f"v_{name}") for name in columns}
        values.update(created_at=self.now, updated_at=self.now, **{STEP_COLUMNS[Step.REGISTERED]: self.now})
        return insert.values(values).on_conflict_do_nothing(index_elements=["key"]).returning(*NO_SPEC)

    @cached_property
    def get_job(self) -> sa.Select[Any]:
        return sa.select(jobs).where(jobs.c.key == P("k"))

    @cached_property
    def owner_alive(self) -> sa.Select[Any]:
        return sa.select(self.live(P("o", type_=jobs.c.owner.type)))

    @cached_property
    def take_over(self) -> sa.Update:
        """Adopt one job from a dead or absent owner (``o`` may be NULL: compared with IS)."""
        return (
            jobs.update()
            .where(
                jobs.c.key == P("k"),
                jobs.c.owner.is_not_distinct_from(P("o")),
                jobs.c.epoch == P("e"),
                jobs.c.handed_over_at.is_(None),
            )
            .values(owner=P("new_owner"), epoch=jobs.c.epoch + 1, updated_at=self.now)
            .returning(*NO_SPEC)
        )

    @cached_property
    def adopt_stale(self) -> sa.Update:
        stale = sa.and_(
            jobs.c.step < int(Step.DONE),
            jobs.c.handed_over_at.is_(None),
            sa.or_(jobs.c.owner.is_(None), jobs.c.owner != P("me")),
            ~self.live(jobs.c.owner),
        )
        candidates = (
            sa.select(jobs.c.key)
            .where(stale)
            .order_by(jobs.c.updated_at)
            .limit(P("limit", type_=sa.Integer))
            .with_for_update(skip_locked=True, of=jobs)
        )
        return (
            jobs.update()
            .where(jobs.c.key.in_(candidates), jobs.c.step < int(Step.DONE))
            .values(owner=P("me"), epoch=jobs.c.epoch + 1, updated_at=self.now)
            .returning(jobs)
        )

    def advance(
        self, step: Step, *, reached: frozenset[Step] = frozenset(), xcom: bool, outcome: bool, error: bool
    ) -> sa.Update:
        """The fenced UPDATE for reaching ``step`` (first arrival time kept), with optional fields.

        ``reached``: earlier steps passed since the last write, each timed by its own bind
        parameter ``t_<column>`` (one write for several steps; first arrival still kept).
        """
        cache = self._advance_cache
        key = (step, reached, xcom, outcome, error)
        if key not in cache:
            column = STEP_COLUMNS[step]
            values: dict[str, Any] = {
                "step": int(step),
                column: sa.func.coalesce(jobs.c[column], self.now),
                "updated_at": self.now,
            }
            for earlier in reached - {step}:
                name = STEP_COLUMNS[earlier]
                values[name] = sa.func.coalesce(jobs.c[name], P(f"t_{name}", type_=TS))
            if xcom:
                values.update(xcom_value=P("v_xcom"), xcom_read=True)
            if outcome:
                values["outcome"] = P("v_outcome")
            if error:
                values["error"] = P("v_error")
            cache[key] = self._fenced().values(values).returning(*NO_SPEC)
        return cache[key]

    @cached_property
    def hand_over(self) -> sa.Update:
        """Unfenced on purpose (the trigger knows no owner/epoch): no owner, epoch + 1 (fencing out
        every write still in flight), the first hand-over time kept, the reason in ``error``."""
        return (
            jobs.update()
            .where(jobs.c.key == P("k"), jobs.c.step < int(Step.DONE))
            .values(
                owner=None,
                epoch=jobs.c.epoch + 1,
                handed_over_at=sa.func.coalesce(jobs.c.handed_over_at, self.now),
                error=P("reason"),
                updated_at=self.now,
            )
            .returning(jobs)
        )

    @cached_property
    def release(self) -> sa.Update:
        return (
            self._fenced().values(owner=None, epoch=jobs.c.epoch + 1, updated_at=self.now).returning(*NO_SPEC)
        )

    @cached_property
    def unfinished(self) -> sa.Select[Any]:
        return (
            sa.select(jobs)
            .where(jobs.c.step < int(Step.DONE), sa.or_(P("any_owner"), jobs.c.owner == P("o")))
            .order_by(jobs.c.created_at)
            .limit(P("limit", type_=sa.Integer))
        )

    @cached_property
    def purge_payloads(self) -> sa.Update:
        return (
            jobs.update()
            .where(
                jobs.c.xcom_value.is_not(None),
                jobs.c.step >= int(Step.XCOM_PUSHED),
                jobs.c.updated_at < self.cutoff,
            )
            .values(xcom_value=None, xcom_purged=True)
        )

    @cached_property
    def delete_finished(self) -> sa.Delete:
        return jobs.delete().where(jobs.c.step >= int(Step.DONE), jobs.c.updated_at < self.cutoff)
