"""Airflow's view of a task instance from inside the triggerer, for the finalizer's adopters.

The same call ``on_kill`` makes (``RuntimeTaskInstance.get_task_states`` over the supervisor
channel, as ``KubernetesPodTrigger.get_task_state`` does): an adopter asks it before acting on a
job whose hand-over mark may never have reached the ledger. Runs in a worker thread: the
supervisor client bridges a call from a foreign thread onto the runner's loop.

The answer is the TI's state only: Airflow's ``/states`` endpoint carries no try number (nor does
any other call the trigger runner may make, 3.3.2), so the adopter checks the try against the
ledger (``Admission``: a newer try of the same TI recorded there means this try is over).

Bounded: at most ``MAX_THREADS`` calls block a thread at once (a dedicated pool), so a
supervisor that does not answer cannot pile up threads; each call is also bounded in time by its
caller (``call_timeout``).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from finalizer.jobs import JobSpec
from finalizer.seams import TaskState

#: Threads that may block in ``get_task_states`` at once (further calls queue).
MAX_THREADS = 2

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="kpo-finalizer-task-state")
        return _POOL


def supervisor_task_state() -> TaskState:
    async def task_state(spec: JobSpec) -> str | None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = spec.ti
        call = functools.partial(
            RuntimeTaskInstance.get_task_states,
            dag_id=ti.dag_id,
            task_ids=[ti.task_id],
            run_ids=[ti.run_id],
            map_index=ti.map_index,
        )
        states = await asyncio.get_running_loop().run_in_executor(_pool(), call)
        # The endpoint suffixes a mapped TI's key with its map index (as the provider reads it).
        key = f"{ti.task_id}_{ti.map_index}" if ti.map_index >= 0 else ti.task_id
        state = (states.get(ti.run_id) or {}).get(key)
        return None if state is None else str(getattr(state, "value", state))

    return task_state
