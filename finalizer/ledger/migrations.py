"""Versioned ledger schema: ordered, frozen migration steps and the ``migrate`` runner.

Why not Alembic: the schema is three small tables owned by one library, migrated at connect time
by every process that opens the ledger. A ``kpof_schema_version`` table plus ordered functions is
enough, needs no config files or script directory, and is easy to run under a lock.

Rules: a migration, once released, never changes (it describes the schema of its time, so it
spells its tables out instead of importing ``schema.py``). A new schema change is a new function
appended to ``MIGRATIONS``. ``migrate`` runs in ONE transaction under a lock (PostgreSQL advisory
lock; SQLite ``BEGIN IMMEDIATE``), so concurrent starters never race, and it is idempotent.
A database newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from finalizer.exceptions import LedgerError

#: Arbitrary constant: the advisory lock that serialises migrations on PostgreSQL.
_PG_MIGRATION_LOCK = 0x6B706F66  # "kpof"


def _v1_initial(conn: Connection) -> None:
    """Instances and jobs, with a timestamp per pipeline step."""
    md = sa.MetaData()
    ts = sa.DateTime(timezone=True)
    sa.Table(
        "kpof_instances",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", ts, nullable=False),
        sa.Column("heartbeat", ts, nullable=False),
    )
    steps = (
        "registered",
        "completion_seen",
        "xcom_persisted",
        "xcom_pushed",
        "diagnostics_captured",
        "sidecar_stopped",
        "pod_cleaned",
        "done",
    )
    jobs = sa.Table(
        "kpof_jobs",
        md,
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("ti_id", sa.String(64), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("cluster_key", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("pod_name", sa.String(253), nullable=False),
        sa.Column("pod_uid", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("xcom_read", sa.Boolean, nullable=False),
        sa.Column("xcom_value", sa.Text, nullable=True),
        sa.Column("xcom_purged", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        *(sa.Column(f"{step}_at", ts, nullable=True) for step in steps),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
    )
    sa.Index("ix_kpof_jobs_owner_step", jobs.c.owner, jobs.c.step)
    sa.Index("ix_kpof_jobs_updated_at", jobs.c.updated_at)
    sa.Index("ix_kpof_jobs_ti", jobs.c.ti_id, jobs.c.try_number)
    md.create_all(conn)


def _v2_handed_over(conn: Connection) -> None:
    """Jobs handed to the worker path (classic ``TriggerEvent``): never adopted again."""
    ts = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE kpof_jobs ADD COLUMN handed_over_at {ts}"))


Migration = tuple[int, str, Callable[[Connection], None]]

#: Every migration, in order. Append only.
MIGRATIONS: tuple[Migration, ...] = (
    (1, "initial: instances, jobs", _v1_initial),
    (2, "jobs.handed_over_at: a job handed to the worker is never adopted", _v2_handed_over),
)
LATEST_VERSION = MIGRATIONS[-1][0]

_version_md = sa.MetaData()
_version_table = sa.Table(
    "kpof_schema_version",
    _version_md,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def _apply(conn: Connection) -> list[int]:
    _version_md.create_all(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(_version_table.c.version))).scalar() or 0
    if current > LATEST_VERSION:
        raise LedgerError(
            f"The ledger's schema is version {current}, newer than this kpo-finalizer supports "
            f"({LATEST_VERSION}): upgrade kpo-finalizer or point it at another ledger"
        )
    applied = []
    for version, name, step in MIGRATIONS:
        if version <= current:
            continue
        step(conn)
        conn.execute(_version_table.insert().values(version=version, name=name, applied_at=datetime.now(UTC)))
        applied.append(version)
    return applied


def migrate(conn: Connection) -> list[int]:
    """Bring the schema to ``LATEST_VERSION`` inside the caller's transaction; return what was applied.

    On SQLite the transaction is already ``BEGIN IMMEDIATE`` (see ``engines.py``); on PostgreSQL
    this takes a transaction-scoped advisory lock first.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    return _apply(conn)


def schema_version(conn: Connection) -> int:
    """The version the database is at (0 for an empty database)."""
    if not sa.inspect(conn).has_table("kpof_schema_version"):
        return 0
    return int(conn.execute(sa.select(sa.func.max(_version_table.c.version))).scalar() or 0)
