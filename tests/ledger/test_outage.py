"""Ledger outages (issue 13): a PostgreSQL ledger behind a TCP proxy that refuses or black-holes.

A job's ledger write rides out an outage shorter than ``ledger_deadline`` (a PostgreSQL restart
takes seconds) and gives up past it with an error that says how long it tried and why.
The outage lengths are the fault being injected, not synchronisation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import sqlalchemy as sa

from finalizer.config import FinalizerConfig
from finalizer.exceptions import LedgerUnavailableError
from finalizer.jobs import Step
from finalizer.ledger import Ledger
from finalizer.metrics import FinalizerMetrics, Registry
from finalizer.progress import Progress
from finalizer.testing.tcp_proxy import TcpProxy
from tests.support.ledger import make_spec

pytestmark = pytest.mark.anyio


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[TcpProxy]:
    url = sa.make_url(pg_url)
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as opened:
        yield opened


def through(proxy: TcpProxy, pg_url: str) -> str:
    url = sa.make_url(pg_url).set(host=proxy.host, port=proxy.port)
    return url.render_as_string(hide_password=False)


async def _progress(ledger: Ledger, config: FinalizerConfig, n: int) -> Progress:
    me = await ledger.register_instance("h", 1)
    rec = await ledger.submit(make_spec(n), me)
    return Progress(rec.spec, rec, ledger, config.ledger_policy(), FinalizerMetrics(Registry()))


async def test_a_refused_ledger_write_is_retried_until_the_database_is_back(
    proxy: TcpProxy, pg_url: str
) -> None:
    """Failed before the fix: the write gave up after 6 attempts (~3 s) of 'connection refused'."""
    config = FinalizerConfig(ledger_url=through(proxy, pg_url), ledger_deadline=30)
    async with await Ledger.connect(through(proxy, pg_url), connect_timeout=2, operation_timeout=2) as ledger:
        job = await _progress(ledger, config, 1)
        await proxy.set_mode("refuse")
        result: list[object] = []

        async def write() -> None:
            try:
                result.append(await job.commit(Step.XCOM_PERSISTED, xcom={"a": 1}))
            except Exception as exc:
                result.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await anyio.sleep(8)  # the outage: longer than the old 6-attempt budget
            assert result == [], f"the write gave up during an 8 s outage: {result}"
            await proxy.set_mode("pass")
        assert job.rec.step is Step.XCOM_PERSISTED
        stored = await ledger.get(job.rec.key)
        assert stored is not None
        assert (stored.step, stored.xcom_value) == (Step.XCOM_PERSISTED, {"a": 1})


async def test_past_the_deadline_the_write_gives_up_and_says_why(proxy: TcpProxy, pg_url: str) -> None:
    config = FinalizerConfig(ledger_url=through(proxy, pg_url), ledger_deadline=3)
    async with await Ledger.connect(through(proxy, pg_url), connect_timeout=1, operation_timeout=1) as ledger:
        job = await _progress(ledger, config, 2)
        await proxy.set_mode("refuse")
        # Order, not a time window (a loaded machine only makes things slower): the write is still
        # retrying when most of the deadline has passed, and it does give up (bounded, far below
        # the fail_after guard).
        near_deadline = anyio.Event()

        async def mark() -> None:
            await anyio.sleep(2.0)  # 2 s of the 3 s ledger_deadline
            near_deadline.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(mark)
            with anyio.fail_after(60), pytest.raises(LedgerUnavailableError) as info:
                await job.commit(Step.XCOM_PERSISTED, xcom={"a": 1})
            gave_up_after_mark = near_deadline.is_set()  # no await since the error: its moment
            tg.cancel_scope.cancel()
        assert gave_up_after_mark, "the write gave up before most of ledger_deadline had passed"
        message = str(info.value)
        for part in ("writing XCOM_PERSISTED", "attempts", "ledger_deadline 3s", "Connect call failed"):
            assert part in message
        assert info.value.__cause__ is not None
