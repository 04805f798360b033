"""The ledger's tables as the code queries them (the current schema version).

The database gets its shape from ``migrations.py`` (frozen, ordered steps), never from this
module; a test checks that the migrated database and these definitions agree, so a change here
without a migration fails CI.

Timestamps are ``timestamptz`` on PostgreSQL and UTC text on SQLite. Every ``Step`` has a column
``<step>_at`` recording when the job reached it.
"""

from __future__ import annotations

import sqlalchemy as sa

from finalizer.jobs import Step

metadata = sa.MetaData()

#: The column holding the time a job reached each step.
STEP_COLUMNS: dict[Step, str] = {step: f"{step.name.lower()}_at" for step in Step}

schema_version = sa.Table(
    "kpof_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

instances = sa.Table(
    "kpof_instances",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat", sa.DateTime(timezone=True), nullable=False),
)

jobs = sa.Table(
    "kpof_jobs",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    # task-instance coordinates
    sa.Column("ti_id", sa.String(64), nullable=False),
    sa.Column("dag_id", sa.String(250), nullable=False),
    sa.Column("task_id", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("map_index", sa.Integer, nullable=False),
    sa.Column("try_number", sa.Integer, nullable=False),
    # pod coordinates
    sa.Column("cluster_key", sa.String(64), nullable=False),
    sa.Column("namespace", sa.String(253), nullable=False),
    sa.Column("pod_name", sa.String(253), nullable=False),
    sa.Column("pod_uid", sa.String(64), nullable=False),
    # the whole JobSpec (cluster, pod, settings, start-up rules), JSON text
    sa.Column("spec", sa.Text, nullable=False),
    # progress and fencing
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(64), nullable=True),
    sa.Column("epoch", sa.Integer, nullable=False),
    # the XCom payload: JSON text; xcom_read tells "read, was empty/None" from "not read yet"
    sa.Column("xcom_read", sa.Boolean, nullable=False),
    sa.Column("xcom_value", sa.Text, nullable=True),
    sa.Column("xcom_purged", sa.Boolean, nullable=False),
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    *(sa.Column(column, sa.DateTime(timezone=True), nullable=True) for column in STEP_COLUMNS.values()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # set once the trigger handed the task to the worker path: no finalizer touches the pod again
    sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index("ix_kpof_jobs_owner_step", jobs.c.owner, jobs.c.step)
sa.Index("ix_kpof_jobs_updated_at", jobs.c.updated_at)
sa.Index("ix_kpof_jobs_ti", jobs.c.ti_id, jobs.c.try_number)
