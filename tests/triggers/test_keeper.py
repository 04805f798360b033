"""The keeper's decisions (``triggers.keeper``): which failures are permanent, the backoff cap,
and the down/up transitions with their one line each. Table-driven; no finalizer runs here (the
real restarts are in ``test_e2e_reliability_recovery.py``)."""

from __future__ import annotations

import logging

import pytest

from finalizer.config import FinalizerConfig
from finalizer.exceptions import (
    ConfigurationError,
    FinalizerPartsMissingError,
    FinalizerUnavailableError,
    LedgerUnavailableError,
)
from triggers import keeper


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (ConfigurationError("bad ledger_url"), True),
        (FinalizerPartsMissingError("no module named sqlalchemy"), True),
        # The class decides, not the words: the same text on a plain unavailability is transient.
        (FinalizerUnavailableError("kpo-finalizer parts are missing: x"), False),
        (LedgerUnavailableError("no ledger heartbeat for 60s"), False),
        (OSError("connection refused"), False),
    ],
)
def test_permanent_failures_are_told_by_their_class(exc: BaseException, permanent: bool) -> None:
    assert keeper.permanent(exc) is permanent


@pytest.mark.parametrize(
    ("ledger_deadline", "stale_threshold", "heartbeat_interval", "cap"),
    [
        (60.0, 30.0, 5.0, 15.0),  # the defaults: half the stale threshold
        (5.0, 30.0, 5.0, 5.0),  # a short deadline
        (120.0, 200.0, 5.0, 60.0),  # never more than a minute
        (2.0, 1.5, 0.2, 1.0),  # never less than a second
    ],
)
def test_the_backoff_cap_follows_the_configuration(
    ledger_deadline: float, stale_threshold: float, heartbeat_interval: float, cap: float
) -> None:
    config = FinalizerConfig(
        ledger_deadline=ledger_deadline,
        stale_threshold=stale_threshold,
        heartbeat_interval=heartbeat_interval,
    )
    assert keeper.backoff_cap(config) == cap


def test_down_then_failed_attempts_back_off_to_the_cap_then_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="triggers.runtime")
    k = keeper.Keeper()
    k.cap = 3.0
    k.went_down(LedgerUnavailableError("gone"))
    k.went_down("again")  # already down: no second line
    down = k.down
    assert down is not None
    assert down.backoff == keeper.FIRST_BACKOFF <= 0.5  # the first attempt comes quickly
    waits = []
    for _ in range(5):
        down.next_attempt = 0.0  # due now
        assert k.due()
        k.attempt_failed(LedgerUnavailableError("still gone"))
        waits.append(down.backoff)
    assert waits == [1.0, 2.0, 3.0, 3.0, 3.0]
    assert down.attempts == 5
    k.came_up()
    assert k.down is None
    assert k.restarts == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "is DOWN" in errors[0]
    assert "is UP again" in errors[1]


def test_a_permanent_failure_stops_the_attempts() -> None:
    k = keeper.Keeper()
    k.went_down(LedgerUnavailableError("gone"))
    assert k.down is not None
    k.down.next_attempt = 0.0
    assert k.due()
    k.attempt_failed(FinalizerPartsMissingError("no module named asyncpg"))
    assert k.down.permanent
    k.down.next_attempt = 0.0
    assert not k.due()
    assert "cannot recover" in k.down.describe()
