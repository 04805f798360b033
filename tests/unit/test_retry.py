"""finalizer.retry: classification table, per-step policies, and the I/O wrapper (retry, timeout, metrics)."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from api_client.backoff import RetryPolicy
from api_client.exceptions import ExecutionAPIError, TransportError, error_from_response
from finalizer import exceptions as fx
from finalizer.config import RETRY_STEPS, FinalizerConfig, StepRetry
from finalizer.metrics import FinalizerMetrics, Registry, StatsSink
from finalizer.retry import StepCalls, classify, side_of


def api_error(status: int, headers: dict[str, str] | None = None) -> ExecutionAPIError:
    response = httpx.Response(status, headers=headers or {}, json={"detail": {"reason": "x", "message": "m"}})
    return error_from_response(response, method="POST", path="/xcoms/d/r/t/k")


CASES: list[tuple[str, BaseException, float | None]] = [
    ("kube-transient", fx.KubeTransientError("reset"), 0.0),
    ("kube-429-retry-after", fx.KubeTransientError("429", status=429, retry_after=7), 7.0),
    ("kube-negative-retry-after", fx.KubeTransientError("x", retry_after=-3), 0.0),
    ("pod-not-found", fx.PodNotFoundError(status=404), None),
    ("pod-conflict", fx.PodConflictError(status=409), None),
    ("kube-4xx", fx.KubeRequestError(status=422), None),
    ("sidecar-not-running", fx.SidecarNotRunningError(), None),
    ("xcom-too-large", fx.XComTooLargeError(), None),
    ("xcom-invalid-json", fx.XComInvalidJSONError(), None),
    ("xcom-exec-failed", fx.XComExecFailedError(), None),
    ("ledger-unavailable", fx.LedgerUnavailableError(), 0.0),
    ("job-lost", fx.JobLostError(), None),
    ("ledger-other", fx.LedgerError(), None),
    ("configuration", fx.ConfigurationError(), None),
    ("finalizer-unavailable", fx.FinalizerUnavailableError(), None),
    ("api-transport", TransportError("connect refused"), 0.0),
    ("api-429", api_error(429, {"Retry-After": "3"}), 3.0),
    ("api-503", api_error(503), 0.0),
    ("api-400", api_error(400), None),
    ("api-404", api_error(404), None),
    ("api-409", api_error(409), None),
    ("api-403", api_error(403), None),
    ("bare-timeout", TimeoutError(), 0.0),
    ("bare-connection-reset", ConnectionResetError(), 0.0),
    ("bug", KeyError("x"), None),
    ("value-error", ValueError("x"), None),
]


@pytest.mark.parametrize(("exc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(exc: BaseException, expected: float | None) -> None:
    assert classify(exc) == expected


def test_every_step_has_a_bounded_policy_and_the_ledgers_is_bounded_by_its_deadline() -> None:
    """One source for policies (``FinalizerConfig``); the ledger's retries until ``ledger_deadline``."""
    config = FinalizerConfig()
    for step in RETRY_STEPS:
        policy = config.retry_policy(step)
        assert policy.max_attempts >= 2
        assert policy.deadline is not None
        assert policy.deadline <= 300
    ledger = FinalizerConfig(ledger_deadline=45).ledger_policy()
    assert ledger.deadline == 45
    assert ledger.max_attempts * ledger.max_delay * (1 - ledger.jitter) >= 45  # time, not count, ends it
    configured = FinalizerConfig(
        ledger_deadline=45, retry={"ledger": StepRetry(deadline=300)}
    ).ledger_policy()
    assert configured.deadline == 45


def _metrics() -> FinalizerMetrics:
    return FinalizerMetrics(Registry(StatsSink(mode="off")))


FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002, deadline=5.0)


@pytest.mark.anyio
async def test_transient_errors_are_retried_and_counted() -> None:
    metrics = _metrics()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise fx.KubeTransientError("reset")
        return "ok"

    assert await StepCalls({"read_pod": FAST}, 30.0, metrics=metrics)("read_pod", "read_pod", flaky) == "ok"
    assert calls == 3
    assert metrics.retries.value(step="read_pod") == 2
    assert metrics.errors.value(step="read_pod", error="KubeTransientError") == 0


@pytest.mark.anyio
async def test_terminal_errors_are_raised_at_once_and_counted() -> None:
    metrics = _metrics()
    calls = 0

    async def gone() -> None:
        nonlocal calls
        calls += 1
        raise fx.PodNotFoundError("pod gone", status=404)

    with pytest.raises(fx.PodNotFoundError):
        await StepCalls({"cleanup": FAST}, 30.0, metrics=metrics)("cleanup", "cleanup", gone)
    assert calls == 1
    assert metrics.retries.value(step="cleanup") == 0
    assert metrics.errors.value(step="cleanup", error="PodNotFoundError") == 1


@pytest.mark.anyio
async def test_attempts_run_out_with_the_last_error() -> None:
    metrics = _metrics()

    async def down() -> None:
        raise fx.LedgerUnavailableError("db down")

    with pytest.raises(fx.LedgerUnavailableError, match="db down"):
        await StepCalls({"ledger": FAST}, 30.0, metrics=metrics)("ledger", "ledger", down)
    assert metrics.retries.value(step="ledger") == FAST.max_attempts - 1
    assert metrics.errors.value(step="ledger", error="LedgerUnavailableError") == 1


@pytest.mark.anyio
async def test_server_retry_after_is_honoured() -> None:
    calls: list[float] = []

    async def limited() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise fx.KubeTransientError("429", status=429, retry_after=0.2)
        return "ok"

    assert (
        await StepCalls({"read_xcom": FAST}, 30.0, metrics=_metrics())("read_xcom", "read_xcom", limited)
        == "ok"
    )
    assert calls[1] - calls[0] >= 0.2


@pytest.mark.anyio
async def test_a_call_stuck_past_call_timeout_is_a_transient_error_and_retried() -> None:
    metrics = _metrics()
    calls = 0

    async def stuck_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(60)  # never finishes: the call timeout ends it
        return "ok"

    calls_with_timeout = StepCalls({"cleanup": FAST}, 0.05, metrics=metrics)
    assert await calls_with_timeout("delete pod", "cleanup", stuck_once) == "ok"
    assert calls == 2
    assert metrics.retries.value(step="cleanup") == 1


SIDES: list[tuple[str, BaseException, str | None, str]] = [
    ("api-error", api_error(503), None, "Airflow"),
    ("api-transport", TransportError("refused"), "read_pod", "Airflow"),
    ("kube", fx.KubeTransientError("reset"), "push_xcom", "Kubernetes"),
    ("ledger", fx.LedgerUnavailableError(), None, "ledger"),
    ("bare-timeout-push", TimeoutError(), "push_xcom", "Airflow"),
    ("bare-timeout-ledger", TimeoutError(), "ledger", "ledger"),
    ("bare-timeout-kube-step", TimeoutError(), "cleanup", "Kubernetes"),
    ("bare-timeout-no-step", TimeoutError(), None, "unknown"),
]


@pytest.mark.parametrize(("exc", "step", "side"), [c[1:] for c in SIDES], ids=[c[0] for c in SIDES])
def test_side_of_names_who_failed(exc: BaseException, step: str | None, side: str) -> None:
    assert side_of(exc, step) == side


@pytest.mark.anyio
async def test_an_xcom_push_that_times_out_is_airflows_error_not_kubernetes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failed before the fix: every step's timeout became KubeTransientError, so a metadata-DB
    outage (the supervisor's XCom call hanging) was logged as a Kubernetes error."""
    metrics = _metrics()

    async def hung() -> None:
        await anyio.sleep(60)

    calls = StepCalls({"push_xcom": FAST}, 0.02, metrics=metrics)
    with caplog.at_level("INFO", logger="finalizer.retry"), pytest.raises(TransportError, match="timed out"):
        await calls("push XCom 'return_value'", "push_xcom", hung)
    assert metrics.errors.value(step="push_xcom", error="TransportError") == 1
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries
    assert all("on the Airflow side" in line and "Kube" not in line for line in retries)
