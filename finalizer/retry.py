"""Which errors are worth retrying, and how hard, per pipeline step.

``classify`` is the classifier ``api_client.backoff.retry_async`` expects: the seconds the server
asked us to wait (0.0 when it did not say) for a transient error, None for a terminal one. It
decides on classes from ``finalizer.exceptions`` and on the documented ``retry_after`` of
``api_client.exceptions.ExecutionAPIError`` — never on message strings. Anything unknown is
terminal: retrying a bug only hides it.

``policy_for(step)`` gives the default ``RetryPolicy`` of each I/O step (``FinalizerConfig``
may override them); ``call_with_retry`` wires policy, classifier, logging and metrics together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import TypeVar

from api_client.backoff import RetryPolicy, retry_async
from api_client.exceptions import ExecutionAPIError
from finalizer.exceptions import (
    FinalizerError,
    KubeTransientError,
    LedgerUnavailableError,
)
from finalizer.metrics import METRICS, FinalizerMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


def classify(exc: BaseException) -> float | None:
    """Transient → seconds to wait at least (0.0: use the backoff); terminal → None.

    Transient: ``KubeTransientError`` (transport, timeout, 5xx, 429 with its ``Retry-After``),
    ``LedgerUnavailableError`` (the database may come back; the step deadline bounds the wait),
    ``api_client`` errors whose ``retry_after`` is set (transport errors, 429, 5xx), and a bare
    ``TimeoutError`` / ``ConnectionError`` that escaped a boundary. Terminal: everything else —
    404/409/4xx, XCom read errors, ``JobLostError``, configuration errors, unknown exceptions.
    """
    if isinstance(exc, KubeTransientError):
        return _wait(exc.retry_after)
    if isinstance(exc, LedgerUnavailableError):
        return 0.0
    if isinstance(exc, FinalizerError):
        return None
    if isinstance(exc, ExecutionAPIError):
        # api_client sets retry_after only on transient errors (transport, 429, 5xx).
        return None if exc.retry_after is None else _wait(exc.retry_after)
    if isinstance(exc, TimeoutError | ConnectionError):
        return 0.0
    return None


def _wait(retry_after: float | None) -> float:
    """A server hint as a non-negative wait; no hint → 0.0 (the policy's backoff decides)."""
    return 0.0 if retry_after is None else max(0.0, float(retry_after))


#: Default retry policy per I/O step (names match ``finalizer.config.RETRY_STEPS``).
STEP_POLICIES: MappingProxyType[str, RetryPolicy] = MappingProxyType(
    {
        # Reading the pod drives completion; a short outage should not end the job.
        "read_pod": RetryPolicy(max_attempts=6, base_delay=0.2, max_delay=5.0, deadline=60.0),
        # The XCom lives only as long as the sidecar: retry fast and often, but not for long.
        "read_xcom": RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=2.0, deadline=30.0),
        # Losing the push fails the task: be patient with the Execution API (429/5xx under load).
        "push_xcom": RetryPolicy(max_attempts=10, base_delay=0.25, max_delay=15.0, deadline=300.0),
        # Log tail and termination message are nice to have: give up quickly.
        "diagnostics": RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, deadline=10.0),
        # A sidecar that will not stop only delays pod phase; deletion follows anyway.
        "stop_sidecar": RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=2.0, deadline=15.0),
        # A pod left behind costs money: retry the delete/label for a while.
        "cleanup": RetryPolicy(max_attempts=8, base_delay=0.25, max_delay=10.0, deadline=120.0),
        # The ledger is our foundation: past this, the loop fails loudly (DESIGN "Crash, don't hang").
        "ledger": RetryPolicy(max_attempts=10, base_delay=0.1, max_delay=5.0, deadline=60.0),
    }
)


def policy_for(step: str) -> RetryPolicy:
    """The default policy of one I/O step; ``KeyError`` names the known steps."""
    try:
        return STEP_POLICIES[step]
    except KeyError:
        raise KeyError(f"unknown retry step {step!r}; known: {sorted(STEP_POLICIES)}") from None


def on_retry_hook(
    step: str, metrics: FinalizerMetrics = METRICS
) -> Callable[[int, BaseException, float], None]:
    """``retry_async(on_retry=…)``: count the retry and log its class and wait (never a payload)."""

    def hook(attempt: int, exc: BaseException, wait: float) -> None:
        metrics.retried(step)
        log.warning(
            "%s: attempt %d failed (%s: %s); retrying in %.2fs", step, attempt, type(exc).__name__, exc, wait
        )

    return hook


async def call_with_retry(
    step: str,
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy | None = None,
    metrics: FinalizerMetrics = METRICS,
) -> T:
    """Run ``fn`` under ``step``'s policy with ``classify``; the final error is counted and re-raised."""
    try:
        return await retry_async(
            fn, policy or policy_for(step), classify, on_retry=on_retry_hook(step, metrics)
        )
    except Exception as exc:
        metrics.error(step, exc)
        raise
