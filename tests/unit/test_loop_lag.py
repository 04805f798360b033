"""``measure_lag``: a loop blocked for a while shows up as lag (the health signal's source)."""

from __future__ import annotations

import time

import anyio
import pytest

from finalizer.upkeep import Lag, measure_lag
from tests.support.polling import eventually


def _block_the_loop(seconds: float) -> None:
    """The stimulus: CPU-bound work that never yields (not a synchronisation sleep)."""
    time.sleep(seconds)


@pytest.mark.anyio
async def test_a_blocked_loop_is_reported_as_lag() -> None:
    lag = Lag()
    async with anyio.create_task_group() as tg:
        tg.start_soon(measure_lag, 0.01, lag)
        await anyio.sleep(0.05)  # a few unblocked ticks first
        _block_the_loop(0.3)
        # The next tick reports the block; nothing to await.
        await eventually(lambda: lag.worst >= 0.25, 5, interval=0.01, what="the block reported")
        tg.cancel_scope.cancel()
    assert lag.worst >= 0.25
    assert lag.last <= lag.worst
