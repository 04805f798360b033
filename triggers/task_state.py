"""Airflow's view of a task instance from inside the triggerer, for the finalizer's adopters.

The same call ``on_kill`` makes (``RuntimeTaskInstance.get_task_states`` over the supervisor
channel, as ``KubernetesPodTrigger.get_task_state`` does): an adopter asks it before acting on a
job whose hand-over mark may never have reached the ledger. Runs in a worker thread: the
supervisor client bridges a call from a foreign thread onto the runner's loop.

The answer is the TI's state only: Airflow's ``/states`` endpoint carries no try number, so "still
DEFERRED" is checked for the TI, whose current try is the one a trigger for it serves.
"""

from __future__ import annotations

import asyncio

from finalizer.jobs import JobSpec
from finalizer.seams import TaskState


def supervisor_task_state() -> TaskState:
    async def task_state(spec: JobSpec) -> str | None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = spec.ti
        states = await asyncio.to_thread(
            RuntimeTaskInstance.get_task_states,
            dag_id=ti.dag_id,
            task_ids=[ti.task_id],
            run_ids=[ti.run_id],
            map_index=ti.map_index,
        )
        # The endpoint suffixes a mapped TI's key with its map index (as the provider reads it).
        key = f"{ti.task_id}_{ti.map_index}" if ti.map_index >= 0 else ti.task_id
        state = (states.get(ti.run_id) or {}).get(key)
        return None if state is None else str(getattr(state, "value", state))

    return task_state
