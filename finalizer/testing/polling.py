"""Waiting on the Airflow world from outside it: a poll with a deadline, and a TI row's state.

A test, the demo or a benchmark drives real processes (``airflow triggerer``, a worker's task
process) that write Airflow's metadata DB; the only way to see what they did is to read it again.
``wait_for`` polls a predicate and fails with ``TimeoutError`` naming what it waited for;
``current_ti`` reads a TI row by its coordinates (a retry gives the TI a new id);
``wait_for_ti_state`` combines both and, on timeout, says the state the TI is in instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from finalizer.testing.airflow_env import TIInfo

__all__ = ["current_ti", "wait_for", "wait_for_ti_state"]


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def current_ti(ti: TIInfo) -> TIInfo:
    """The TI row now, found by (dag_id, run_id, task_id, map_index).

    Not by id: a retry (UP_FOR_RETRY) moves the finished try to ``task_instance_history`` and
    gives the TI row a new id.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == ti.dag_id,
                TaskInstance.run_id == ti.run_id,
                TaskInstance.task_id == ti.task_id,
                TaskInstance.map_index == ti.map_index,
            )
        ).one()
        return TIInfo(
            id=str(row.id),
            dag_id=row.dag_id,
            run_id=row.run_id,
            task_id=row.task_id,
            map_index=int(row.map_index),
            try_number=int(row.try_number or 0),
            state=None if row.state is None else str(row.state),
        )


def wait_for_ti_state(ti: TIInfo, states: Iterable[str], timeout: float = 60.0) -> TIInfo:
    """Poll Airflow's own model until the TI is in one of ``states``; return it."""
    wanted = set(states)

    def check() -> TIInfo | None:
        info = current_ti(ti)
        return info if info.state in wanted else None

    try:
        result: TIInfo = wait_for(check, timeout, 0.2, f"TI {ti.task_id} to reach {sorted(wanted)}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; it is {current_ti(ti).state}") from None
    return result
