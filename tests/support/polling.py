"""Poll with a deadline, for state that has no event or hook to await (prefer one where it exists).

``eventually`` runs on an event loop; ``eventually_blocking`` is its twin for code in a plain
thread. Both return the check's first truthy value and fail with ``AssertionError`` naming what
they waited for once ``within`` seconds have passed.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

__all__ = ["eventually", "eventually_blocking"]


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    within: float = 10.0,
    *,
    interval: float = 0.02,
    between: Callable[[], object] | None = None,
    what: str = "condition",
) -> T:
    """Await ``check()`` (sync or async) until truthy; ``between`` runs before each further look."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:g} s")
        if between is not None:
            between()
        await anyio.sleep(interval)


def eventually_blocking(
    check: Callable[[], T], within: float = 10.0, *, interval: float = 0.02, what: str = "condition"
) -> T:
    """``eventually`` for a thread with no event loop: sleeps between looks."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:g} s")
        time.sleep(interval)
