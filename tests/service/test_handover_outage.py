"""A hand-over the ledger could not take is never adopted: two finalizers through one outage.

Issue 13, review finding 1. Real parts: two ``Finalizer`` instances (an owner and an adopter) on
one PostgreSQL ledger behind ``finalizer.testing.tcp_proxy``, the fake Kubernetes API (its request
audit says who touched which pod) and Airflow's metadata DB for the task's state. Both lose the
ledger; the owner's finalizer fails and its trigger takes the classic path with the mark kept
pending; the adopter survives the outage and, when the ledger returns, sees the owner stale while
Airflow still says DEFERRED (the classic trigger polls). The outage and the keeper's restart delay
are the faults being injected, not synchronisation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from finalizer.config import FinalizerConfig
from finalizer.exceptions import FinalizerError
from finalizer.handover import PendingHandovers
from finalizer.ledger import Ledger
from finalizer.ledger.records import JobRecord
from finalizer.service import Finalizer
from finalizer.testing.tcp_proxy import TcpProxy
from tests.pipeline.harness import NS, World, fast_config
from tests.service.test_handover import dead_owner_of, with_airflow_state
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

STALE = 3.0
#: The owner's keeper restarts its finalizer this long after the ledger is back (its backoff).
RESTART_DELAY = 1.0


@asynccontextmanager
async def launched(
    config: FinalizerConfig, world: World, url: str, handovers: PendingHandovers | None = None
) -> AsyncIterator[Finalizer]:
    wiring = with_airflow_state(world, world.wiring(url))
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(config, wiring, handovers=handovers))
    try:
        yield finalizer
    finally:
        await finalizer.adrain(2.0)


async def test_a_pending_hand_over_is_written_before_any_adopter_can_take_the_job(
    world: World, make_postgres_database: Callable[[str], str], tmp_path: Path
) -> None:
    """Failed before the fix: the adopter took the job as soon as the ledger came back (the
    owner's heartbeat was stale), Airflow said DEFERRED, and it read the pod's XCom, pushed it and
    deleted the pod while the owner's classic trigger was on it (reads 1, deletes 1)."""
    direct = make_postgres_database("kpof_h13")
    url = sa.make_url(direct)
    fast = dict(heartbeat_interval=0.2, stale_threshold=STALE, adopt_interval=0.2, call_timeout=2.0)
    owner_config = fast_config(tmp_path / "owner", ledger_deadline=2.0, **fast)
    adopter_config = fast_config(tmp_path / "adopter", ledger_deadline=60.0, **fast)
    job = world.make_job(xcom='"the worker reads this"')
    world.env.set_ti_state(job.ti.id, "deferred")
    pending = PendingHandovers()
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as tcp:
        through = url.set(host=tcp.host, port=tcp.port).render_as_string(hide_password=False)
        async with (
            await Ledger.connect(direct) as ledger,
            launched(adopter_config, world, through) as adopter,
        ):
            async with launched(owner_config, world, through, pending) as owner:
                waiting = asyncio.ensure_future(owner.submit(job))

                async def claimed() -> JobRecord | None:
                    rec = await ledger.get(job.key)
                    return rec if rec is not None and rec.owner == owner.instance_id else None

                first: JobRecord | None = await eventually(claimed, what="the owner's claim in the ledger")
                assert first is not None
                await eventually(lambda: owner.health().watching == 1, what="the owner watches the pod")

                # Both lose the ledger; the owner's finalizer fails past its ledger_deadline and
                # its trigger takes the classic path: the mark cannot be written, it stays pending.
                await tcp.set_mode("refuse")
                await eventually(lambda: owner.failure is not None, within=15, what="the owner fails")
                with pytest.raises(FinalizerError):
                    await waiting
                assert not await owner.hand_over(job, "the trigger took the classic path")
                assert job.key in pending
            # The pod finishes while the classic trigger polls it; Airflow still says DEFERRED.
            world.kube.terminate(NS, job.pod.name, exit_code=0)
            sentinel = world.make_job(xcom='"s"')
            async with dead_owner_of(dataclasses.replace(world, ledger_url=direct), sentinel):
                pass  # a job whose owner died without any hand-over: the adopter's to take
            world.env.set_ti_state(sentinel.ti.id, "deferred")
            world.kube.terminate(NS, sentinel.pod.name, exit_code=0)

            async def owner_stale() -> bool:
                beats = [i.heartbeat for i in await ledger.instances() if i.id == first.owner]
                return bool(beats) and datetime.now(UTC) - beats[0] > timedelta(seconds=STALE + 0.5)

            stale: bool = await eventually(owner_stale, within=15, what="the owner's heartbeat is stale")
            assert stale
            assert adopter.failure is None
            await tcp.set_mode("pass")  # the ledger is back, for both
            await anyio.sleep(RESTART_DELAY)  # the fault: the owner's keeper backs off first
            async with launched(owner_config, world, through, pending):

                async def sentinel_done() -> bool:
                    rec = await ledger.get(sentinel.key)
                    return rec is not None and rec.done

                # The adopter's rounds went past its quiet window: it adopted and finished the
                # sentinel (a dead owner's job with no hand-over), and left the handed-over one.
                done: bool = await eventually(
                    sentinel_done, within=30, what="the adopter finished the sentinel"
                )
                assert done
                rec = await ledger.get(job.key)
    assert rec is not None
    assert rec.handed_over_at is not None
    assert (rec.owner, rec.epoch) == (None, first.epoch + 1)  # only the mark bumped it: never adopted
    assert len(pending) == 0
    audit = (world.xcom_reads(job), world.sidecar_stops(job), world.deletes(job))
    assert audit == (0, 0, 0), f"the adopter touched the worker's pod: reads, stops, deletes = {audit}"
    assert world.pod(job) is not None
    assert not world.has_xcom(job)
    assert world.xcom(sentinel) == "s"
