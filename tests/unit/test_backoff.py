from __future__ import annotations

import pytest

from api_client.backoff import RetryPolicy, retry_async


@pytest.mark.parametrize(
    ("attempt", "retry_after", "rand", "expected"),
    [
        (1, None, 0.0, 0.05),  # half the base delay is jitter: rand 0 → lower bound
        (1, None, 1.0, 0.1),
        (3, None, 1.0, 0.4),
        (20, None, 1.0, 10.0),  # capped at max_delay
        (1, 4.0, 0.0, 4.0),  # Retry-After is a floor
        (20, 2.0, 1.0, 10.0),  # …not a ceiling
    ],
)
def test_delay_table(attempt: int, retry_after: float | None, rand: float, expected: float) -> None:
    assert RetryPolicy().delay(attempt, retry_after, rand) == pytest.approx(expected)


class Transient(Exception):
    pass


@pytest.mark.anyio
async def test_retries_transient_then_succeeds() -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Transient
        return "ok"

    policy = RetryPolicy(base_delay=0.001, max_delay=0.001)
    assert await retry_async(fn, policy, lambda e: 0.0 if isinstance(e, Transient) else None) == "ok"
    assert calls == 3


@pytest.mark.anyio
async def test_terminal_error_is_not_retried() -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await retry_async(fn, RetryPolicy(base_delay=0.001), lambda e: None)
    assert calls == 1


@pytest.mark.anyio
async def test_gives_up_after_max_attempts_with_last_error() -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise Transient(calls)

    with pytest.raises(Transient) as info:
        await retry_async(fn, RetryPolicy(max_attempts=4, base_delay=0.001), lambda e: 0.0)
    assert calls == 4
    assert info.value.args == (4,)


@pytest.mark.anyio
async def test_deadline_stops_before_a_wait_that_would_pass_it() -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise Transient

    policy = RetryPolicy(max_attempts=100, deadline=1.0)
    with pytest.raises(Transient):
        await retry_async(fn, policy, lambda e: 5.0)  # Retry-After 5 s > 1 s deadline
    assert calls == 1
