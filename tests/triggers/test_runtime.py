"""The lifetime rule of ``triggers.runtime``: one finalizer per trigger-runner loop.

Real parts: a real ``Finalizer`` on a real SQLite ledger, configured through Airflow's own
``conf`` (``AIRFLOW__KPO_FINALIZER__*``), started by concurrent first triggers on one loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from finalizer.exceptions import FinalizerUnavailableError
from finalizer.jobs import ClusterRef, JobSpec, PodRef, TaskInstanceRef
from triggers import warmup
from triggers.runtime import _Runtime

TI = TaskInstanceRef(id="0190aaaa-0000-7000-8000-00000000000c", dag_id="d", task_id="c", run_id="r")


def _no_probe(ti: TaskInstanceRef) -> warmup.Probe:
    async def probe() -> object:
        return None

    return probe


def _job() -> JobSpec:
    return JobSpec(ti=TI, cluster=ClusterRef(), pod=PodRef(namespace="ns", name="p", uid="u"))


def _ledger_env(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_URL", f"sqlite:///{path / 'ledger.sqlite3'}")


async def _end_of_loop(runtime: _Runtime) -> None:
    """What ``asyncio.run`` does to the guard when the runner's loop shuts down."""
    guard = runtime.guard
    assert guard is not None
    await asyncio.sleep(0)  # one step: a task cancelled before its first step skips its finally
    guard.cancel()
    await asyncio.wait({guard})


@pytest.mark.anyio
async def test_concurrent_first_triggers_start_one_finalizer_and_the_loop_end_drains_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ledger_env(monkeypatch, tmp_path)
    runtime = _Runtime(probe_for=_no_probe)
    got = await asyncio.gather(*(runtime.get(TI) for _ in range(4)))
    first = got[0]
    assert all(f is first for f in got), "one finalizer per runner loop"
    assert first.health().running
    assert first.config.resolved_ledger_url.endswith("ledger.sqlite3")  # read from [kpo_finalizer]

    await _end_of_loop(runtime)
    assert not first.health().running, "the loop's end drains its finalizer"
    assert runtime.finalizer is None
    with pytest.raises(FinalizerUnavailableError):
        first.submit_future(_job())


def test_a_new_loop_drains_the_previous_loops_finalizer_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ledger_env(monkeypatch, tmp_path)
    runtime = _Runtime(probe_for=_no_probe)
    # A loop that stops without cancelling its guard: its finalizer was never drained.
    loop = asyncio.new_event_loop()
    old = loop.run_until_complete(runtime.get(TI))
    old_guard = runtime.guard
    assert old.health().running

    async def second_loop() -> None:
        new = await runtime.get(TI)
        try:
            assert new is not old
            assert not old.health().running, "the old loop's finalizer was drained first"
            assert new.health().running
        finally:
            await _end_of_loop(runtime)

    try:
        asyncio.run(second_loop())
    finally:
        assert old_guard is not None
        old_guard.cancel()  # let the old loop end its guard (a no-op drain now) before closing it
        loop.run_until_complete(asyncio.wait({old_guard}))
        loop.close()
