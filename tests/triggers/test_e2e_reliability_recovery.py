"""The triggerer's finalizer comes back after a ledger outage (issue 13, weakness 2).

Real parts: ``triggers.runtime`` (the trigger runner's keeper) starting real ``Finalizer``s from
Airflow's own ``conf`` (``AIRFLOW__KPO_FINALIZER__*``), on a PostgreSQL ledger behind
``finalizer.testing.tcp_proxy`` that refuses (a PostgreSQL restart) and passes again. The outage
lengths are the fault being injected, not synchronisation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa

from finalizer.exceptions import FinalizerUnavailableError, LedgerUnavailableError
from finalizer.jobs import ClusterRef, JobSpec, PodRef, TaskInstanceRef
from finalizer.metrics import METRICS
from finalizer.testing.tcp_proxy import TcpProxy
from tests.support.polling import eventually
from triggers import warmup
from triggers.keeper import KEEPER_TICK
from triggers.runtime import _Runtime

pytestmark = pytest.mark.anyio

TI = TaskInstanceRef(id="0190aaaa-0000-7000-8000-0000000000e1", dag_id="d", task_id="r", run_id="r")
JOB = JobSpec(ti=TI, cluster=ClusterRef(), pod=PodRef(namespace="ns", name="p", uid="u"))
DEADLINE = 2.0


def _no_probe(ti: TaskInstanceRef) -> warmup.Probe:
    async def probe() -> object:
        return None

    return probe


@pytest.fixture
async def proxy(make_postgres_database: Callable[[str], str]) -> AsyncIterator[tuple[TcpProxy, str]]:
    url = sa.make_url(make_postgres_database("kpof_recovery"))
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as opened:
        through = url.set(host=opened.host, port=opened.port).render_as_string(hide_password=False)
        yield opened, through


def _settings(monkeypatch: pytest.MonkeyPatch, ledger_url: str, **more: str) -> None:
    values = {
        "LEDGER_URL": ledger_url,
        "LEDGER_DEADLINE": str(DEADLINE),
        "HEARTBEAT_INTERVAL": "0.2",
        "STALE_THRESHOLD": "1.5",
        "CALL_TIMEOUT": "1",
        "ADOPT_INTERVAL": "0.2",
        **more,
    }
    for name, value in values.items():
        monkeypatch.setenv(f"AIRFLOW__KPO_FINALIZER__{name}", value)


async def _end_of_loop(runtime: _Runtime) -> None:
    guard = runtime.guard
    assert guard is not None
    guard.cancel()
    await asyncio.wait({guard})


def _lines(caplog: pytest.LogCaptureFixture, word: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "triggers.runtime" and f"kpo-finalizer is {word}" in r.getMessage()
    ]


async def test_after_an_outage_past_the_deadline_the_finalizer_starts_again(
    proxy: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed before the fix: the runtime kept handing out the failed finalizer for the rest of
    the process's life, so every later task went the classic way."""
    tcp, url = proxy
    _settings(monkeypatch, url)
    caplog.set_level(logging.INFO, logger="triggers.runtime")
    runtime = _Runtime(probe_for=_no_probe)
    restarts_before = METRICS.restarts.value()
    first = await runtime.get(TI)
    try:
        assert first.health().running
        assert METRICS.available.value() == 1

        # A PostgreSQL restart that outlasts ledger_deadline: the finalizer fails and tears down.
        await tcp.set_mode("refuse")
        down_at = time.monotonic()
        await eventually(lambda: runtime.down is not None, within=10 * DEADLINE, what="the runtime is down")
        assert first.failure is not None
        assert METRICS.available.value() == 0
        # The failed instance is not half-alive: it is torn down and refuses work at once.
        assert not first.health().running
        with pytest.raises(LedgerUnavailableError):
            first.submit_future(JOB)
        # While down a trigger is refused at once, with the reason (it then goes the classic way).
        started = time.monotonic()
        with pytest.raises(FinalizerUnavailableError, match=r"is down for \d+s \(.*Ledger"):
            await runtime.get(TI)
        assert time.monotonic() - started < 0.5
        await asyncio.sleep(3 * DEADLINE)  # the outage goes on: restart attempts fail meanwhile
        assert runtime.down is not None
        assert runtime.down.attempts >= 2

        # The ledger is back: a new finalizer starts within the backoff, and serves triggers.
        await tcp.set_mode("pass")
        healed = time.monotonic()
        await eventually(lambda: runtime.finalizer is not None, within=10 * DEADLINE, what="a new finalizer")
        recovered_in = time.monotonic() - healed
        second = await runtime.get(TI)
        assert second is not first
        assert second.health().running
        assert METRICS.available.value() == 1
        assert METRICS.restarts.value() == restarts_before + 1
        assert recovered_in < DEADLINE + 5  # the capped backoff, one start-up, slack
        # One ERROR line per change of state, in the triggerer's own log (this module's logger).
        downs, ups = _lines(caplog, "DOWN"), _lines(caplog, "UP again")
        assert [r.levelno for r in downs] == [logging.ERROR]
        assert [r.levelno for r in ups] == [logging.ERROR]
        assert "LedgerUnavailableError" in downs[0].getMessage()
        print(f"down after {started - down_at:.1f}s; back {recovered_in:.1f}s after the ledger returned")
    finally:
        await _end_of_loop(runtime)
    assert not second.health().running  # the loop's end drains the current finalizer


async def test_a_dead_loop_thread_is_noticed_and_replaced_not_left_half_alive(
    proxy: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash, don't hang: the finalizer's loop thread stops under it; callers are refused at
    once (never a hang on a dead loop) and a new finalizer takes over."""
    _, url = proxy
    _settings(monkeypatch, url)
    runtime = _Runtime(probe_for=_no_probe)
    first = await runtime.get(TI)
    try:
        assert first._thread is not None
        await asyncio.to_thread(first._thread.stop_now)
        await eventually(
            lambda: runtime.finalizer is not None and runtime.finalizer is not first,
            within=15,
            what="a replacement finalizer",
        )
        assert not first.health().running
        assert (await runtime.get(TI)).health().running
    finally:
        await _end_of_loop(runtime)


async def test_bad_settings_are_permanent_no_restart_attempts_and_no_wait(
    proxy: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = proxy
    _settings(monkeypatch, url, CONCURRENCY_PER_CLUSTER="-4")
    caplog.set_level(logging.INFO, logger="triggers.runtime")
    runtime = _Runtime(probe_for=_no_probe)
    try:
        with pytest.raises(FinalizerUnavailableError, match=r"concurrency_per_cluster.*cannot recover"):
            await runtime.get(TI)
        await asyncio.sleep(3 * 0.5)  # several keeper ticks pass
        assert runtime.down is not None
        assert runtime.down.permanent
        assert runtime.down.attempts == 0
        started = time.monotonic()
        with pytest.raises(FinalizerUnavailableError, match="cannot recover"):
            await runtime.get(TI)
        assert time.monotonic() - started < 0.5
        assert len(_lines(caplog, "DOWN")) == 1
    finally:
        await _end_of_loop(runtime)


async def test_a_first_start_that_fails_is_retried_at_once_with_the_configured_cap(
    proxy: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed before the fix: a first start that failed never read the configuration, so the
    keeper backed off towards 60 s (1, 2, 4, 8 … s) although ledger_deadline is 2 s."""
    tcp, url = proxy
    _settings(monkeypatch, url)
    await tcp.set_mode("refuse")  # the ledger is restarting when the first trigger arrives
    runtime = _Runtime(probe_for=_no_probe)
    try:
        with pytest.raises(FinalizerUnavailableError):
            await runtime.get(TI)
        down = runtime.down
        assert down is not None
        assert runtime.keeper.cap == 1.0  # max(1, min(60, ledger_deadline 2, stale_threshold 1.5 / 2))
        assert down.backoff <= 0.5  # the first attempt comes quickly
        await eventually(lambda: down.attempts >= 3, within=30, what="three quick restart attempts")
        assert down.backoff == 1.0  # doubled up to the cap, not beyond
        await tcp.set_mode("pass")
        await eventually(lambda: runtime.finalizer is not None, within=30, what="the finalizer starts")
        assert (await runtime.get(TI)).health().running
    finally:
        await _end_of_loop(runtime)


async def test_a_finalizer_that_cannot_come_back_refuses_at_once_and_is_not_retried(
    proxy: tuple[TcpProxy, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Crash, don't hang, inside a triggerer: bad settings cannot be fixed by a restart. Every
    trigger is refused at once with the reason (it takes the classic path), the gauge says 0, one
    ERROR line says so, and no restart is attempted; nothing is left running."""
    _, url = proxy
    _settings(monkeypatch, url, LEDGER_DEADLINE="-1")
    caplog.set_level(logging.INFO, logger="triggers.runtime")
    runtime = _Runtime(probe_for=_no_probe)
    try:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(FinalizerUnavailableError, match="cannot recover without a triggerer restart"):
                await runtime.get(TI)
            assert time.monotonic() - started < 2.0
            await asyncio.sleep(2 * KEEPER_TICK)  # the stimulus: keeper ticks pass
        down = runtime.down
        assert down is not None
        assert down.permanent
        assert down.attempts == 0
        assert runtime.finalizer is None
        assert METRICS.available.value() == 0
        assert [r.levelno for r in _lines(caplog, "DOWN")] == [logging.ERROR]
        assert "ConfigurationError" in _lines(caplog, "DOWN")[0].getMessage()
    finally:
        await _end_of_loop(runtime)
