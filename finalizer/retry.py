"""Which errors are worth retrying, and how hard, per pipeline step.

``classify`` is the classifier ``api_client.backoff.retry_async`` expects: the seconds the server
asked us to wait (0.0 when it did not say) for a transient error, None for a terminal one. It
decides on classes from ``finalizer.exceptions`` and on the documented ``retry_after`` of
``api_client.exceptions.ExecutionAPIError`` — never on message strings. Anything unknown is
terminal: retrying a bug only hides it.

``StepCalls`` is the one I/O wrapper the pipeline uses: timeout, policy, classifier, logging
and metrics together. Each step's policy has one source, ``FinalizerConfig.retry_policy``.
``ledger_call`` runs one ledger operation with ``FinalizerConfig.ledger_policy``: retried for as
long as ``ledger_deadline`` allows (not for a count of attempts), and an error that says how long
it tried when it gives up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from api_client.backoff import Classifier, RetryPolicy, retry_async
from api_client.exceptions import ExecutionAPIError, TransportError
from finalizer.config import RETRY_STEPS, FinalizerConfig
from finalizer.exceptions import (
    FinalizerError,
    JobLostError,
    KubeError,
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


#: Which side of the finalizer a step talks to (the others talk to Kubernetes).
STEP_SIDES = {"push_xcom": "Airflow", "ledger": "ledger"}


def side_of(exc: BaseException, step: str | None = None) -> str:
    """Who failed: ``Airflow`` (Execution API / supervisor), ``Kubernetes``, ``the ledger``, or
    the step's side for an error of no side (a bare timeout or connection error)."""
    if isinstance(exc, ExecutionAPIError):
        return "Airflow"
    if isinstance(exc, KubeError):
        return "Kubernetes"
    if isinstance(exc, LedgerError):
        return "ledger"
    return STEP_SIDES.get(step or "", "Kubernetes") if step is not None else "unknown"


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
                # The error of the side that did not answer: an XCom push that times out is
                # Airflow's (its metadata DB, the supervisor), not Kubernetes'.
                message = f"{what} timed out after {timeout:g}s"
                if STEP_SIDES.get(step) == "Airflow":
                    raise TransportError(message) from exc
                raise KubeTransientError(message) from exc

        def on_retry(n: int, exc: BaseException, wait: float) -> None:
            metrics.retried(step)
            log.info(
                "%s failed on the %s side (attempt %d, %s: %s); retrying in %.2fs",
                what,
                side_of(exc, step),
                n,
                type(exc).__name__,
                exc,
                wait,
            )

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


async def ledger_call(what: str, fn: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """``fn()`` retried per ``policy`` (``ledger_transient``); past it, an error that says why.

    A lost job (``JobLostError``) is raised at once, as is. Any other ledger failure that outlasts
    the policy becomes ``LedgerUnavailableError`` naming ``what``, the attempts, the time spent and
    the deadline, ``from`` the last error: that text reaches the task log and the job's record.
    """
    started = time.monotonic()
    attempts = 0

    async def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return await fn()

    def on_retry(n: int, exc: BaseException, wait: float) -> None:
        if n == 1:
            log.warning("ledger: %s failed (%s); retrying for up to %gs", what, exc, policy.deadline or 0)

    try:
        return await retry_async(attempt, policy, ledger_transient, on_retry=on_retry)
    except JobLostError:
        raise
    except LedgerError as exc:
        spent = time.monotonic() - started
        deadline = f"ledger_deadline {policy.deadline:g}s" if policy.deadline is not None else "no deadline"
        raise LedgerUnavailableError(
            f"ledger: {what} gave up after {attempts} attempts over {spent:.1f}s ({deadline}): {exc}"
        ) from exc
