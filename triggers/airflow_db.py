"""How many rows of our triggers (``FinalizingPodTrigger``, ``FinalizingJobTrigger``) Airflow's trigger
table still holds (``status --airflow-db``).

The last condition of a safe removal (README, "Rollback"): a row goes once its task left DEFERRED,
so zero rows means no task waits on this package in any triggerer. Read with one plain ``SELECT``
on the metadata database Airflow is configured with (``[database] sql_alchemy_conn``), in a
read-only transaction where the database has them; never Airflow's ORM session (its import and
set-up would cost more than the query).
"""

from __future__ import annotations

import importlib.util

import sqlalchemy as sa

#: ``triggers.pod.CLASSPATH`` and ``triggers.job.CLASSPATH``, spelt out: importing those modules
#: imports the provider and all of Airflow, which this read needs none of (a test checks that they
#: agree).
CLASSPATH = "triggers.pod.FinalizingPodTrigger"
JOB_CLASSPATH = "triggers.job.FinalizingJobTrigger"
CLASSPATHS = (CLASSPATH, JOB_CLASSPATH)
#: The query the README gives for the same check.
COUNT_SQL = (
    "SELECT count(*) FROM trigger WHERE classpath IN "
    "('triggers.pod.FinalizingPodTrigger', 'triggers.job.FinalizingJobTrigger')"
)


class AirflowDatabaseError(Exception):
    """Airflow's metadata database could not be read (the message hides any password)."""


def count_finalizing_triggers(url: str | None = None, *, timeout: float = 10.0) -> int:
    """Rows of ``FinalizingPodTrigger`` and ``FinalizingJobTrigger`` in Airflow's ``trigger`` table.

    ``url`` defaults to Airflow's configured ``sql_alchemy_conn``. Raises ``AirflowDatabaseError``.
    """
    if url is None:
        from airflow.configuration import conf

        url = str(conf.get("database", "sql_alchemy_conn"))
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise AirflowDatabaseError("[database] sql_alchemy_conn is not a database URL") from exc
    where = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "sqlite":
        connect_args["timeout"] = timeout
    elif backend == "postgresql":
        if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
            parsed = parsed.set(drivername="postgresql+psycopg2")  # the driver Airflow installs
        connect_args.update(
            connect_timeout=int(max(1, timeout)), options="-c default_transaction_read_only=on"
        )
    engine = sa.create_engine(parsed, poolclass=sa.pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(COUNT_SQL)).scalar_one())
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        reason = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
        first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        raise AirflowDatabaseError(f"Airflow's database {where} could not be read: {first}") from exc
    finally:
        engine.dispose()
