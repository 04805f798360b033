"""Which errors are worth retrying, and how hard, per pipeline step.

``classify`` is the classifier ``api_client.backoff.retry_async`` expects: the seconds the server
asked us to wait (0.0 when it did not say) for a transient error, None for a terminal one. It
decides on classes from ``finalizer.exceptions`` and on the documented ``retry_after`` of
``api_client.exceptions.ExecutionAPIError`` — never on message strings. Anything unknown is
terminal: retrying a bug only hides it.

``StepCalls`` is the one I/O wrapper the pipeline uses: timeout, policy, classifier, logging
and metrics together. ``ledger_transient`` classifies ledger writes (their policy is
``FinalizerConfig.ledger_policy``).
``STEP_POLICIES`` is a table of per-step policies (see ``policy_for``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

from api_client.backoff import Classifier, RetryPolicy, retry_async
from api_client.exceptions import ExecutionAPIError
from finalizer.config import RETRY_STEPS, FinalizerConfig
from finalizer.exceptions import (
    FinalizerError,
    JobLostError,
    KubeTransientError,
    LedgerError,
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


class StepCalls:
    """The pipeline's I/O wrapper: one call of one step, bounded by ``call_timeout``, retried per
    the step's policy with the classifier, timed and counted in metrics (never logging a payload).

    Built once per pipeline: the policies are resolved up front, not on every call.
    """

    def __init__(
        self,
        policies: Mapping[str, RetryPolicy],
        call_timeout: float,
        classifier: Classifier = classify,
        metrics: FinalizerMetrics = METRICS,
    ) -> None:
        self._policies = dict(policies)
        self._timeout = call_timeout
        self._classify = classifier
        self._metrics = metrics

    @classmethod
    def for_config(
        cls, config: FinalizerConfig, classifier: Classifier = classify, metrics: FinalizerMetrics = METRICS
    ) -> StepCalls:
        """The configured policy of every step in ``RETRY_STEPS``, and ``call_timeout``."""
        return cls(
            {step: config.retry_policy(step) for step in RETRY_STEPS},
            config.call_timeout,
            classifier,
            metrics,
        )

    async def __call__(self, what: str, step: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` as step ``step`` (its policy and metrics); ``what`` names the call in logs."""
        timeout, metrics = self._timeout, self._metrics

        async def attempt() -> T:
            # asyncio.timeout, not anyio.fail_after: the pipeline always runs on the finalizer's
            # asyncio loop, and fail_after's backend lookup on every call is measurable CPU.
            try:
                async with asyncio.timeout(timeout):
                    return await fn()
            except TimeoutError as exc:
                raise KubeTransientError(f"{what} timed out after {timeout:g}s") from exc

        def on_retry(n: int, exc: BaseException, wait: float) -> None:
            metrics.retried(step)
            log.info("%s failed (attempt %d, %s); retrying in %.2fs", what, n, type(exc).__name__, wait)

        with metrics.timed(step):
            try:
                return await retry_async(attempt, self._policies[step], self._classify, on_retry=on_retry)
            except Exception as exc:
                metrics.error(step, exc)
                raise


def ledger_transient(exc: BaseException) -> float | None:
    """Ledger calls: a lost job is final; any other ledger failure (a dropped connection, an
    unreachable database) is retried — the service's heartbeat fails loudly past ``ledger_deadline``."""
    if isinstance(exc, JobLostError):
        return None
    return 0.0 if isinstance(exc, LedgerError) else None
