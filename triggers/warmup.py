"""Warm the trigger runner's supervisor channel before the first pod ends.

Airflow 3.3.2's ``TriggerRunnerSupervisor.client`` builds its in-process Execution API app on the
first request that needs it (a ``cached_property``): 12-17 s on a loaded machine, during which the
supervisor answers nothing else (its heartbeat stalls too). Without a warm-up that cost lands on
the first ``SetXCom`` of the first finished pod. So when the finalizer starts in a runner, one
read-only request is sent at once, fire-and-forget, and the app is built while pods still run.

The probe is ``XCom.aget_one`` of a key nobody writes, on the trigger's own TI: the runner sends
``GetXCom``; the supervisor's ``handle_get_xcom`` calls ``client.xcoms.get`` → ``GET
/xcoms/{dag}/{run}/{task}/{key}`` (a ``SELECT``; nothing is written), whose 404 the Task SDK turns
into ``None`` (the supervisor logs that 404 as "XCom not found", naming ``WARMUP_KEY``). The
request goes through the runner's multiplexed comms (one future per request id), so cancelling
it leaves the channel consistent.

A warm-up never fails anything: errors and time-outs are logged and forgotten; the first real
XCom call then pays the cold start, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from finalizer.jobs import TaskInstanceRef

log = logging.getLogger(__name__)

#: The XCom key the probe reads; never written by anyone.
WARMUP_KEY = "__kpo_finalizer_warmup"
#: Longer than any cold start seen (12-17 s), so a stuck supervisor does not pin the task forever.
WARMUP_TIMEOUT = 120.0

Probe = Callable[[], Awaitable[object]]


def xcom_probe(ti: TaskInstanceRef) -> Probe:
    """``GetXCom`` of ``WARMUP_KEY`` for ``ti``: read-only, answered ``None`` (404)."""

    async def probe() -> object:
        from airflow.sdk.execution_time.xcom import XCom

        value: object = await XCom.aget_one(
            key=WARMUP_KEY, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index
        )
        return value

    return probe


async def warm(probe: Probe, within: float = WARMUP_TIMEOUT) -> bool:
    """Run ``probe`` once (at most ``within`` s); True if the channel answered. Raises only a cancel."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            await probe()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a warm-up must never fail the trigger
        log.info(
            "kpo-finalizer: supervisor channel warm-up gave up after %.1fs (%s: %s); "
            "the first XCom call pays the cold start",
            time.monotonic() - started,
            type(exc).__name__,
            exc,
        )
        return False
    log.info("kpo-finalizer: supervisor channel warm after %.1fs", time.monotonic() - started)
    return True


def start(probe: Probe, within: float = WARMUP_TIMEOUT) -> asyncio.Task[bool]:
    """Start ``warm(probe)`` on the running loop and return at once (fire-and-forget)."""
    return asyncio.get_running_loop().create_task(warm(probe, within), name="kpo-finalizer-warmup")


async def stop(task: asyncio.Task[bool] | None) -> None:
    """Cancel ``task`` if still running and wait until it has ended; the caller's own cancel still works."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    # ``wait`` neither raises the task's outcome nor swallows a cancel aimed at the caller.
    await asyncio.wait({task})
