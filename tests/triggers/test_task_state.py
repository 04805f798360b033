"""``triggers.task_state``: the adopter's question to Airflow blocks at most ``MAX_THREADS`` threads.

The supervisor channel (``SUPERVISOR_COMMS``, Airflow's, not ours) is stood in for by one that
answers only when released and counts how many calls are inside it at once: a supervisor that
stops answering must not pile up one blocked thread per adopted job.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import TaskStatesResult

from finalizer.jobs import ClusterRef, JobSpec, PodRef, TaskInstanceRef
from triggers import task_state


class HeldChannel:
    """Answers ``GetTaskStates`` with DEFERRED once ``release`` is set; counts calls inside."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.entered = threading.Semaphore(0)

    def send(self, msg: Any) -> TaskStatesResult:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.release()
        self.release.wait(30)
        with self._lock:
            self.inside -= 1
        return TaskStatesResult(task_states={msg.run_ids[0]: {msg.task_ids[0]: "deferred"}})


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldChannel]:
    held = HeldChannel()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", held, raising=False)
    try:
        yield held
    finally:
        held.release.set()


def _spec(n: int) -> JobSpec:
    ti = TaskInstanceRef(id=f"0190aaaa-0000-7000-8000-{n:012d}", dag_id="d", task_id="t", run_id="r")
    return JobSpec(ti=ti, cluster=ClusterRef(), pod=PodRef(namespace="ns", name=f"p{n}", uid=f"u{n}"))


@pytest.mark.anyio
async def test_questions_beyond_the_bound_queue_instead_of_taking_threads(channel: HeldChannel) -> None:
    ask = task_state.supervisor_task_state()
    calls = [asyncio.ensure_future(ask(_spec(n))) for n in range(3 * task_state.MAX_THREADS)]
    for _ in range(task_state.MAX_THREADS):  # the first ones are in; the rest must wait outside
        assert await asyncio.to_thread(channel.entered.acquire, True, 10)
    assert not await asyncio.to_thread(channel.entered.acquire, True, 0.3)  # the stimulus: time to enter
    assert channel.inside == task_state.MAX_THREADS
    channel.release.set()
    assert await asyncio.gather(*calls) == ["deferred"] * len(calls)
    assert channel.most == task_state.MAX_THREADS
