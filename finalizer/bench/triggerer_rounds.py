"""One round of N deferred KPO tasks: set it up, tell when it is done, read back what it left.

A variant has one round (start-up, steady state, burst, drain) and, with ``--restart``, a second
one (deferred while the first triggerer runs, finished across the restart). What a round left is
read from Airflow's own tables (task instance state, ``end_date``, ``scheduled_dttm``, the trigger
event in ``next_kwargs``, XCom rows with their ``timestamp``) and from the fake cluster (pods
left); nothing is taken from the code under test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from finalizer.bench.triggerer_fake import xcom_content
from finalizer.bench.triggerer_setup import World, namespace
from finalizer.bench.triggerer_world import (
    CANARY_DAG_ID,
    TaskSlot,
    build_trigger,
    create_round,
    defer_all,
    pod_labels,
    queue_all,
)

TERMINAL = frozenset({"success", "failed", "skipped", "up_for_retry", "upstream_failed", "removed"})


@dataclass(frozen=True, slots=True)
class TIRow:
    state: str | None
    end_date: float | None
    scheduled: float | None  # scheduled_dttm: when a fired trigger's event was written
    event: dict[str, Any] | None  # the classic trigger event (next_kwargs["event"])


@dataclass
class Round:
    """What one round deferred, and (after ``collect``) what it left."""

    variant: str
    run_id: str
    slots: list[TaskSlot]
    ended: dict[str, float] = field(default_factory=dict)  # pod -> base container end
    rows: dict[int, TIRow] = field(default_factory=dict)
    xcom_ok: int = 0
    xcom_rows: int = 0
    xcom_times: list[float] = field(default_factory=list)
    pods_left: int = 0
    done_at: float | None = None

    @property
    def names(self) -> list[str]:
        return [slot.pod_name for slot in self.slots]


def prepare(world: World, variant: str, shape: str, tasks: int, run_id: str) -> Round:
    """The round's runs, pods (Running) and triggers; every task deferred like a worker."""
    slots = create_round(world.env, variant, shape, tasks, run_id)
    ns = namespace(variant)
    if variant != "baseline":
        uids = world.fake.call("create_running", ns, [(s.pod_name, pod_labels(s)) for s in slots])
        slots = [replace(s, uid=uids[s.pod_name]) for s in slots]
    triggers = [build_trigger(variant, s, ns, world.kubeconfig_path) for s in slots]
    queue_all(run_id)
    asyncio.run(defer_all(world.env, [(s.ti, t) for s, t in zip(slots, triggers, strict=True)]))
    return Round(variant, run_id, slots)


def states(run_id: str) -> dict[str, int]:
    """The round's task instances by state (the canary DAG shares no run id, but is excluded anyway)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.state, func.count())
            .where(TaskInstance.run_id == run_id, TaskInstance.dag_id != CANARY_DAG_ID)
            .group_by(TaskInstance.state)
        ).all()
    return {str(state): int(count) for state, count in rows}


def canary_events(run_id: str) -> list[tuple[float, float | None, float | None] | None]:
    """Per TI of the canary run: (due, woke, scheduled_dttm) once its trigger fired, else None."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found: list[tuple[float, float | None, float | None] | None] = []
    with create_session() as session:
        for kwargs, scheduled in session.execute(
            select(TaskInstance.next_kwargs, TaskInstance.scheduled_dttm).where(
                TaskInstance.run_id == run_id, TaskInstance.dag_id == CANARY_DAG_ID
            )
        ):
            event = (kwargs or {}).get("event") if isinstance(kwargs, dict) else None
            if isinstance(event, dict) and "due" in event:
                woke = event.get("woke")
                found.append(
                    (
                        float(event["due"]),
                        None if woke is None else float(woke),
                        scheduled.timestamp() if scheduled else None,
                    )
                )
            else:
                found.append(None)
    return found


def is_done(variant: str, tasks: int) -> Callable[[dict[str, int]], bool]:
    """Finalizing: every task terminal. Classic: every trigger fired (no task deferred any more)."""
    if variant == "finalizing":
        return lambda by: sum(n for s, n in by.items() if s in TERMINAL) >= tasks
    return lambda by: sum(by.values()) >= tasks and by.get("deferred", 0) == 0


def wait(predicate: Callable[[], bool], timeout: float, alive: Callable[[], bool]) -> float | None:
    """Poll every 0.5 s; the time it became true, or None after ``timeout`` or if ``alive`` fails."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.time()
        if time.monotonic() >= deadline or not alive():
            return None
        time.sleep(0.5)


def collect(world: World, rnd: Round, xcom_bytes: int) -> None:
    """Read back TI rows, XComs and pods left (after the drain)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    index = {(s.ti.dag_id, s.ti.task_id, s.ti.map_index): s.index for s in rnd.slots}
    with create_session() as session:
        for row in session.execute(
            select(
                TaskInstance.dag_id,
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.state,
                TaskInstance.end_date,
                TaskInstance.scheduled_dttm,
                TaskInstance.next_kwargs,
            ).where(TaskInstance.run_id == rnd.run_id, TaskInstance.dag_id != CANARY_DAG_ID)
        ):
            i = index.get((row[0], row[1], int(row[2])))
            if i is not None:
                event = (row[6] or {}).get("event") if isinstance(row[6], dict) else None
                rnd.rows[i] = TIRow(
                    None if row[3] is None else str(row[3]),
                    row[4].timestamp() if row[4] else None,
                    row[5].timestamp() if row[5] else None,
                    event if isinstance(event, dict) else None,
                )
        xcoms = session.scalars(select(XComModel).where(XComModel.run_id == rnd.run_id)).all()
        for xcom in xcoms:
            if xcom.dag_id == CANARY_DAG_ID:
                continue
            rnd.xcom_rows += 1
            rnd.xcom_times.append(xcom.timestamp.timestamp())
            i = index.get((xcom.dag_id, xcom.task_id, int(xcom.map_index)))
            if xcom.key == "return_value" and i is not None:
                expected = json.loads(xcom_content(i, xcom_bytes))
                rnd.xcom_ok += int(XComModel.deserialize_value(xcom) == expected)
    left = set(world.fake.call("pods_left", namespace(rnd.variant)))
    rnd.pods_left = len(left & set(rnd.names))  # this round's pods only


def correct(rnd: Round) -> int:
    """Tasks that ended as they must: finalizing success with the right XCom (counted per task)."""
    if rnd.variant == "finalizing":
        return min(rnd.xcom_ok, sum(r.state == "success" for r in rnd.rows.values()))
    if rnd.variant == "classic":
        return sum(
            r.state == "scheduled" and (r.event or {}).get("status") == "success" for r in rnd.rows.values()
        )
    return sum(r.state == "deferred" for r in rnd.rows.values())


#: The state every task of a variant must be in once its round is over.
EXPECTED_STATE = {"finalizing": "success", "classic": "scheduled", "baseline": "deferred"}


def wrong_state(rnd: Round) -> int:
    """Tasks not in their variant's expected state (a missing row counts as wrong)."""
    expected = EXPECTED_STATE[rnd.variant]
    return sum((row := rnd.rows.get(s.index)) is None or row.state != expected for s in rnd.slots)
