"""Which event loop the finalizer's own thread runs: uvloop when installed, else asyncio's.

The dedicated loop does nothing but socket I/O (exec sessions, unary calls, the shared watch,
the Execution API) and ledger calls; uvloop runs it with less CPU per finalized pod (README,
"Measured"; ``python -m finalizer.bench.finalize --event-loop asyncio|uvloop``). The trigger runner's own
loop is Airflow's and is never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from finalizer.exceptions import ConfigurationError

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: EventLoopChoice) -> LoopFactory | None:
    """The factory for ``choice`` (None: asyncio's default loop).

    ``auto`` takes uvloop when it imports; ``uvloop`` without uvloop installed is a configuration
    error, not a silent fallback.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigurationError(
                "event_loop = uvloop, but uvloop is not installed (pip install uvloop, or event_loop = auto)"
            ) from exc
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what a running loop is, for health and benchmark reports."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
