"""A job handed to the worker path is never adopted (issue 13, weakness 3), on SQLite and PostgreSQL.

Before the hand-over mark, a job whose trigger fell back to the classic path stayed adoptable:
after a restart another instance adopted it and acted on a pod the worker owned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import sqlalchemy as sa

from finalizer.exceptions import JobLostError
from finalizer.jobs import Step
from finalizer.ledger import Ledger
from finalizer.testing.tcp_proxy import TcpProxy
from tests.support.ledger import backdate, make_spec
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


async def test_a_handed_over_job_is_neither_adopted_nor_resumed(ledger: Ledger) -> None:
    """Failed before the fix: adopt_stale took the dead owner's job back although it had been
    handed to the worker (there was no hand-over mark)."""
    a = await ledger.register_instance("host-a", 1)
    b = await ledger.register_instance("host-b", 2)
    rec = await ledger.submit(make_spec(1), a)
    rec = await ledger.advance(rec, Step.XCOM_PERSISTED, xcom={"v": 1})
    handed = await ledger.hand_over(rec.key, "the ledger was unreachable; the worker finishes the task")
    assert handed is not None
    assert handed.handed_over_at is not None
    assert handed.owner is None
    assert handed.epoch == rec.epoch + 1
    assert handed.error == "the ledger was unreachable; the worker finishes the task"
    await backdate(ledger, a)
    assert await ledger.adopt_stale(b, threshold=30, limit=10) == []
    again = await ledger.submit(make_spec(1), b)  # a re-run trigger of the same try
    assert (again.owner, again.handed_over_at) == (None, handed.handed_over_at)
    with pytest.raises(JobLostError):
        await ledger.advance(rec, Step.XCOM_PUSHED)  # the old owner's next write is fenced out


async def test_hand_over_is_idempotent_and_leaves_a_done_job_alone(ledger: Ledger) -> None:
    a = await ledger.register_instance("host-a", 1)
    rec = await ledger.submit(make_spec(2), a)
    first = await ledger.hand_over(rec.key, "first")
    second = await ledger.hand_over(rec.key, "second")
    assert first is not None
    assert second is not None
    assert second.handed_over_at == first.handed_over_at  # the first hand-over's time is kept
    done = await ledger.submit(make_spec(3), a)
    await ledger.advance(done, Step.DONE)
    assert await ledger.hand_over(done.key, "late") is None
    assert await ledger.hand_over("no-such-job", "x") is None


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[TcpProxy]:
    url = sa.make_url(pg_url)
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as opened:
        yield opened


async def test_a_black_holed_write_applied_after_the_hand_over_cannot_reach_xcom_persisted(
    proxy: TcpProxy, pg_url: str
) -> None:
    """The write leaves on a black-holed connection, the job is handed over on another path, then
    the connection heals and the write arrives: the (owner, epoch) fence rejects it."""
    via_proxy = (
        sa.make_url(pg_url).set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)
    )
    async with (
        await Ledger.connect(via_proxy, connect_timeout=5, operation_timeout=20) as owner_side,
        await Ledger.connect(pg_url, connect_timeout=5, operation_timeout=10) as other_side,
    ):
        me = await owner_side.register_instance("h", 1)
        rec = await owner_side.submit(make_spec(4), me)
        await proxy.set_mode("blackhole")
        outcome: list[object] = []

        async def late_write() -> None:
            try:
                outcome.append(await owner_side.advance(rec, Step.XCOM_PERSISTED, xcom={"v": 1}))
            except Exception as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(late_write)
            # The write has left: the proxy holds its bytes (sent, not delivered).
            await eventually(lambda: proxy.stats.held > 0, what="the write is held by the black hole")
            assert outcome == []
            assert await other_side.hand_over(rec.key, "handed to the worker") is not None
            await proxy.set_mode("pass")
        assert len(outcome) == 1
        assert isinstance(outcome[0], JobLostError)
        stored = await other_side.get(rec.key)
        assert stored is not None
        assert stored.step is Step.REGISTERED
        assert not stored.xcom_read
        assert stored.handed_over_at is not None
