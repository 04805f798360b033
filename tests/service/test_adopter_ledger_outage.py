"""The ledger fails during an adopter's per-try check: the claim is kept and the check asked again.

Issue 13, review of dce1ebb. Real parts: a finalizer (the adopter) on a PostgreSQL ledger behind
``finalizer.testing.tcp_proxy``, the fake Kubernetes API (its audit counts the pod's reads and
deletes) and Airflow's metadata DB for the task's state. The outage is ordered by events: Airflow's
first answer to the check is lost because the network path drops at that moment (the proxy starts
refusing), so every later attempt of the check meets the ledger down, at ``newer_try``: refused,
it raises ``LedgerUnavailableError``; black-holed, it times out after ``call_timeout``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from finalizer.config import FinalizerConfig
from finalizer.jobs import JobSpec, Step
from finalizer.seams import Foundation, Wiring
from finalizer.service import Finalizer
from finalizer.testing.tcp_proxy import Mode, ThreadedTcpProxy
from tests.pipeline.harness import NS, World, fast_config
from tests.service.test_handover import dead_owner_of, with_airflow_state
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


def path_drops_on_first_answer(world: World, wiring: Wiring, tcp: ThreadedTcpProxy, mode: Mode) -> Wiring:
    """Airflow's state of the TI; its first answer is lost and the ledger's path breaks (``mode``)."""
    inner = with_airflow_state(world, wiring)
    dropped = False

    async def wire(config: FinalizerConfig, stack: AsyncExitStack) -> Foundation:
        foundation = await inner(config, stack)
        ask = foundation.task_state
        assert ask is not None

        async def task_state(spec: JobSpec) -> str | None:
            nonlocal dropped
            if not dropped:
                dropped = True
                await anyio.to_thread.run_sync(tcp.set_mode, mode)
                raise ConnectionResetError("the network path dropped")
            return await ask(spec)

        return dataclasses.replace(foundation, task_state=task_state)

    return wire


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
async def test_a_ledger_failure_in_the_adopters_check_keeps_the_claim_and_asks_again(
    mode: Mode,
    world: World,
    make_postgres_database: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before dce1ebb a ledger error in ``newer_try`` ended the adopted job with
    LedgerUnavailableError while the adopter still owned it: no pod work until the owner went
    stale again. Now the claim is kept, the check retried with backoff, and the job finishes."""
    caplog.set_level(logging.DEBUG, logger="finalizer.admission")
    direct = make_postgres_database("kpof_h13b")
    url = sa.make_url(direct)
    config = fast_config(tmp_path, ledger_deadline=60.0, call_timeout=2.0)
    spec = world.make_job(xcom='"after the outage"')
    world.env.set_ti_state(spec.ti.id, "deferred")
    world.kube.terminate(NS, spec.pod.name, exit_code=0)

    def ledger_failures() -> int:
        return sum(f"adopted job {spec.key} with the ledger" in r.getMessage() for r in caplog.records)

    with ThreadedTcpProxy(url.host or "127.0.0.1", url.port or 5432) as tcp:
        through = url.set(host=tcp.host, port=tcp.port).render_as_string(hide_password=False)
        wiring = path_drops_on_first_answer(world, world.wiring(through), tcp, mode)
        async with dead_owner_of(dataclasses.replace(world, ledger_url=direct), spec) as ledger:
            before = await ledger.get(spec.key)
            assert before is not None
            adopter = await anyio.to_thread.run_sync(lambda: Finalizer.launch(config, wiring))
            try:
                # Two attempts of the check (1 s apart, then 2 s) met the ledger down.
                retried = "the check retried through the outage"
                await eventually(lambda: ledger_failures() >= 2, within=30, what=retried)
                held = await ledger.get(spec.key)
                assert held is not None
                assert (held.owner, held.epoch) == (adopter.instance_id, before.epoch + 1), (
                    "adopted once and kept: no release, no re-adoption"
                )
                assert held.step is Step.REGISTERED  # nothing acted meanwhile
                assert not held.done
                assert held.handed_over_at is None
                assert adopter.failure is None
                assert adopter.health().watching == 1, "the adopted job ended during the outage"
                assert world.xcom_reads(spec) == 0

                tcp.set_mode("pass")  # the ledger is back

                async def finished() -> bool:
                    rec = await ledger.get(spec.key)
                    return rec is not None and rec.done

                done: bool = await eventually(finished, within=40, what="the job finishes after the outage")
                assert done
                after = await ledger.get(spec.key)
            finally:
                await adopter.adrain(2.0)
    assert after is not None
    assert (after.owner, after.epoch) == (adopter.instance_id, before.epoch + 1)
    assert after.handed_over_at is None
    assert world.xcom(spec) == "after the outage"
    assert (world.xcom_reads(spec), world.deletes(spec)) == (1, 1)
