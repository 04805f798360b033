"""The supervisor-channel warm-up: never fails, never blocks ``get``, once per runner, ended with the guard.

The probe (one Airflow ``XCom.aget_one``) is replaced by stand-ins here; the real one against a real
``airflow triggerer`` is checked in ``test_e2e_restart_sqlite.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from finalizer.jobs import TaskInstanceRef
from triggers import warmup
from triggers.runtime import _Runtime

TI_A = TaskInstanceRef(id="0190aaaa-0000-7000-8000-00000000000a", dag_id="d", task_id="a", run_id="r")
TI_B = TaskInstanceRef(id="0190aaaa-0000-7000-8000-00000000000b", dag_id="d", task_id="b", run_id="r")


async def answers_none() -> object:
    return None


async def refuses() -> object:
    raise RuntimeError("supervisor said no")


@pytest.mark.anyio
async def test_an_answer_means_warm(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=warmup.__name__)
    assert await warmup.warm(answers_none) is True
    assert "supervisor channel warm after" in caplog.text


@pytest.mark.anyio
async def test_an_error_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=warmup.__name__)
    assert await warmup.warm(refuses) is False
    assert "RuntimeError: supervisor said no" in caplog.text


@pytest.mark.anyio
async def test_a_probe_that_never_answers_is_given_up() -> None:
    never = asyncio.Event()

    async def hangs() -> object:
        return await never.wait()

    assert await warmup.warm(hangs, within=0) is False


@pytest.mark.anyio
async def test_stop_cancels_a_running_warm_up_and_waits_for_it() -> None:
    never = asyncio.Event()

    async def hangs() -> object:
        return await never.wait()

    task = warmup.start(hangs)
    await asyncio.sleep(0)  # one loop step: the warm-up is now inside the probe
    await warmup.stop(task)
    assert task.cancelled()
    await warmup.stop(task)  # already ended: nothing to do
    await warmup.stop(None)


def test_the_default_probe_is_built_for_the_callers_ti() -> None:
    # Only that it builds; running it needs the runner's supervisor comms (e2e restart test).
    assert callable(warmup.dag_run_probe(TI_A))


@pytest.mark.anyio
async def test_the_first_get_starts_one_warm_up_that_does_not_block_and_ends_with_the_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    asked: list[TaskInstanceRef] = []
    answered = asyncio.Event()  # never set: the supervisor is still building its app

    def probe_for(ti: TaskInstanceRef) -> warmup.Probe:
        asked.append(ti)

        async def probe() -> object:
            return await answered.wait()

        return probe

    runtime = _Runtime(probe_for=probe_for)
    first = await runtime.get(TI_A)
    assert await runtime.get(TI_B) is first
    assert await runtime.get() is first
    assert asked == [TI_A], "one warm-up per runner loop"
    task, guard = runtime.warmup, runtime.guard
    assert task is not None
    assert guard is not None
    assert not task.done(), "get() returned without waiting for the warm-up"

    # The runner's loop shuts down: the guard ends the warm-up, then drains the finalizer.
    await asyncio.sleep(0)  # one loop step: a task cancelled before its first step skips its finally
    guard.cancel()
    await asyncio.wait({guard})
    assert task.cancelled()


@pytest.mark.anyio
async def test_the_warm_up_waits_for_a_lull_in_arriving_triggers() -> None:
    """The supervisor builds its API on the thread that creates new triggers: not during a burst."""
    arrivals = warmup.Arrivals(quiet=0.2, longest=30)
    probed: list[float] = []

    async def probe() -> object:
        probed.append(time.monotonic())
        return None

    started = time.monotonic()
    task = warmup.start(probe, arrivals=arrivals)
    for _ in range(3):  # triggers keep arriving for 0.3 s
        await asyncio.sleep(0.1)
        arrivals.note()
    last = time.monotonic()
    assert await asyncio.wait_for(task, 10) is True
    assert probed[0] - last >= 0.2, "the probe waited for 0.2 s without arrivals"
    assert probed[0] - started >= 0.5


@pytest.mark.anyio
async def test_the_warm_up_waits_no_longer_than_longest() -> None:
    arrivals = warmup.Arrivals(quiet=60, longest=0.2)
    task = warmup.start(answers_none, arrivals=arrivals)
    arrivals.note()
    assert await asyncio.wait_for(task, 10) is True  # not the 60 s quiet time
