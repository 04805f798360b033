"""The metadata DB's own record of every state change and XCom write, for ``bench chaos``.

Airflow keeps no timeline of a task instance's states (``task_instance_history`` holds earlier
tries only), so the campaign adds one in PostgreSQL itself: row triggers on ``task_instance``
(every change of ``state``) and ``xcom`` (every insert) write to two audit tables, stamped with
``clock_timestamp()``. Whatever process writes (a triggerer's supervisor, a worker, the bench),
the audit sees it, including a second terminal write or an XCom written twice and deleted.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from finalizer.bench.chaos_checks import Transition

INSTALL = """
CREATE TABLE IF NOT EXISTS chaos_ti_audit (
    id bigserial PRIMARY KEY, ti_id uuid NOT NULL, old_state varchar(20), new_state varchar(20),
    try_number integer, at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS chaos_xcom_audit (
    id bigserial PRIMARY KEY, dag_id varchar(250), run_id varchar(250), task_id varchar(250),
    map_index integer, key varchar(512), at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION chaos_ti_state() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO chaos_ti_audit (ti_id, old_state, new_state, try_number)
        VALUES (NEW.id, CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.state END, NEW.state, NEW.try_number);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION chaos_xcom_insert() RETURNS trigger AS $$
BEGIN
    INSERT INTO chaos_xcom_audit (dag_id, run_id, task_id, map_index, key)
    VALUES (NEW.dag_id, NEW.run_id, NEW.task_id, NEW.map_index, NEW.key);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS chaos_ti_state ON task_instance;
CREATE TRIGGER chaos_ti_state AFTER INSERT OR UPDATE OF state ON task_instance
    FOR EACH ROW EXECUTE FUNCTION chaos_ti_state();
DROP TRIGGER IF EXISTS chaos_xcom_insert ON xcom;
CREATE TRIGGER chaos_xcom_insert AFTER INSERT ON xcom FOR EACH ROW EXECUTE FUNCTION chaos_xcom_insert();
"""


def install() -> None:
    """Create the audit tables and triggers (after Airflow's migrations, before any run)."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        session.execute(text(INSTALL))


def transitions(ti_ids: list[str]) -> dict[str, tuple[Transition, ...]]:
    """TI id → its state changes in order."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    found: dict[str, list[Transition]] = defaultdict(list)
    if not ti_ids:
        return {}
    with create_session() as session:
        rows = session.execute(
            text(
                "SELECT ti_id, old_state, new_state, try_number, extract(epoch FROM at) FROM chaos_ti_audit "
                "WHERE ti_id = ANY(CAST(:ids AS uuid[])) ORDER BY id"
            ),
            {"ids": ti_ids},
        ).all()
    for ti_id, old, new, try_number, at in rows:
        found[str(ti_id)].append(Transition(old, new, int(try_number or 0), float(at)))
    return {k: tuple(v) for k, v in found.items()}


def xcom_inserts(run_ids: list[str]) -> dict[tuple[str, str, str, int], list[tuple[str, float]]]:
    """(dag_id, run_id, task_id, map_index) → (key, time) of every XCom insert, in order."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    found: dict[tuple[str, str, str, int], list[tuple[str, float]]] = defaultdict(list)
    if not run_ids:
        return {}
    with create_session() as session:
        rows = session.execute(
            text(
                "SELECT dag_id, run_id, task_id, map_index, key, extract(epoch FROM at) "
                "FROM chaos_xcom_audit WHERE run_id = ANY(:runs) ORDER BY id"
            ),
            {"runs": run_ids},
        ).all()
    for dag_id, run_id, task_id, map_index, key, at in rows:
        found[(str(dag_id), str(run_id), str(task_id), int(map_index))].append((str(key), float(at)))
    return dict(found)


def xcom_rows(run_ids: list[str]) -> dict[tuple[str, str, str, int], list[tuple[str, Any]]]:
    """(dag_id, run_id, task_id, map_index) → (key, value decoded as Airflow decodes it) of each row."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found: dict[tuple[str, str, str, int], list[tuple[str, Any]]] = defaultdict(list)
    with create_session() as session:
        for row in session.scalars(select(XComModel).where(XComModel.run_id.in_(run_ids))):
            key = (str(row.dag_id), str(row.run_id), str(row.task_id), int(row.map_index))
            found[key].append((str(row.key), XComModel.deserialize_value(row)))
    return dict(found)
