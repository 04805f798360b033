"""Bounded retries with jittered exponential backoff, shared by every I/O edge.

The caller says which errors are transient (and how long the server asked to wait);
this module only decides *when* to try again and *when* to give up. Pure timing logic
plus one small async loop, so it is testable with a fake clock and random source.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

T = TypeVar("T")

#: classify(exc) -> None if the error is terminal, else the server's Retry-After in seconds (or 0.0).
Classifier = Callable[[BaseException], float | None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry. ``max_attempts`` counts the first try."""

    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 10.0
    #: Give up when the next wait would end past this many seconds since the first try.
    deadline: float | None = 60.0
    #: Fraction of each delay that is randomised (0 = none, 1 = full jitter).
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None = None, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        r = random.random() if rand is None else rand
        backoff = backoff * (1 - self.jitter) + backoff * self.jitter * r
        if retry_after:
            # The server knows its load better than we do: never retry sooner than asked.
            backoff = max(backoff, retry_after)
        return float(backoff)


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    classify: Classifier,
    *,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn`` until it succeeds, a terminal error occurs, or the policy runs out.

    The last error is re-raised as is, so callers see their own exception types.
    """
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            retry_after = classify(exc)
            if retry_after is None or attempt >= policy.max_attempts:
                raise
            wait = policy.delay(attempt, retry_after)
            if policy.deadline is not None and clock() - start + wait > policy.deadline:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            await anyio.sleep(wait)
