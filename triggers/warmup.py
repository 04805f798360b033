"""Warm the trigger runner's supervisor channel before the first pod ends.

Airflow 3.3.2's ``TriggerRunnerSupervisor.client`` builds its in-process Execution API app on the
first request that needs it (a ``cached_property``): seconds on a loaded machine (README,
"Measured"), during which the supervisor answers nothing else (its heartbeat stalls too). Without a
warm-up that cost lands on the first ``SetXCom`` of the first finished pod. So when the finalizer
starts in a runner, one read-only request is sent at once, fire-and-forget, and the app is built
while pods still run.

The probe asks for the state of the trigger's own DAG run: the runner sends ``GetDagRunState``
over its supervisor comms (as ``XCom.aget_one`` sends ``GetXCom``); the supervisor's
``handle_get_dag_run_state`` calls ``client.dag_runs.get_state`` → ``GET
/dag-runs/{dag}/{run}/state`` (a ``SELECT``; nothing is written), answered 200. (An earlier probe read
an XCom key nobody writes: its 404 made the supervisor log an error-level "XCom not found" at
every runner start.) The request goes through the runner's multiplexed comms (one future per
request id), so cancelling it leaves the channel consistent.

The build blocks the supervisor's main thread, so it is not sent while the runner is still
receiving its first triggers: the supervisor creates each new trigger's workload on that same
thread, and the two together stretched a 1,000-trigger start-up. The warm-up waits for a lull in
arrivals (``QUIET`` s without a new trigger, ``LONGEST`` s at most), then sends its probe.

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

#: Far longer than any cold start seen (README, "Measured"), so a stuck supervisor does not pin the task
#: forever.
WARMUP_TIMEOUT = 120.0

Probe = Callable[[], Awaitable[object]]

#: The warm-up waits until no new trigger arrived for this long (seconds)…
QUIET = 1.0
#: …but never longer than this after the first one.
LONGEST = 30.0


class Arrivals:
    """When this runner's triggers arrive; ``lull`` returns once they pause (or ``longest`` passed)."""

    def __init__(self, quiet: float = QUIET, longest: float = LONGEST) -> None:
        self.quiet, self.longest = quiet, longest
        self.first = self.last = time.monotonic()

    def note(self) -> None:
        self.last = time.monotonic()

    async def lull(self) -> None:
        # A timer, not a poll: each sleep ends exactly at the lull as known now (arrivals move it).
        while (wait := min(self.last + self.quiet, self.first + self.longest) - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)


def dag_run_probe(ti: TaskInstanceRef) -> Probe:
    """``GetDagRunState`` of ``ti``'s DAG run: read-only, answered 200 with the run's state."""

    async def probe() -> object:
        from airflow.sdk.execution_time.comms import DagRunStateResult, GetDagRunState
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        answer = await SUPERVISOR_COMMS.asend(GetDagRunState(dag_id=ti.dag_id, run_id=ti.run_id))
        if not isinstance(answer, DagRunStateResult):
            raise TypeError(f"GetDagRunState answered {type(answer).__name__}: {answer}")
        return answer.state

    return probe


async def warm(probe: Probe, within: float = WARMUP_TIMEOUT, arrivals: Arrivals | None = None) -> bool:
    """Run ``probe`` once (at most ``within`` s), after the ``arrivals`` lull; True if the channel
    answered. Raises only a cancel."""
    if arrivals is not None:
        await arrivals.lull()
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


def start(
    probe: Probe, within: float = WARMUP_TIMEOUT, arrivals: Arrivals | None = None
) -> asyncio.Task[bool]:
    """Start ``warm(probe)`` on the running loop and return at once (fire-and-forget)."""
    task = warm(probe, within, arrivals)
    return asyncio.get_running_loop().create_task(task, name="kpo-finalizer-warmup")


async def stop(task: asyncio.Task[bool] | None) -> None:
    """Cancel ``task`` if still running and wait until it has ended; the caller's own cancel still works."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    # ``wait`` neither raises the task's outcome nor swallows a cancel aimed at the caller.
    await asyncio.wait({task})
