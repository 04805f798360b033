"""The shared test kit (``tests/support``): optional imports never skip on CI; polls fail by name."""

from __future__ import annotations

import itertools

import pytest

from tests.support.optional import require, unavailable
from tests.support.polling import eventually, eventually_blocking

MISSING = "kpof_no_such_module"


def test_require_returns_the_module() -> None:
    assert require("json").dumps([1]) == "[1]"


def test_a_missing_module_skips_locally_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require(MISSING)


def test_a_missing_module_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING}.*CI=true"):
        require(MISSING)
    with pytest.raises(pytest.fail.Exception, match="no PostgreSQL"):
        unavailable("no PostgreSQL")


@pytest.mark.anyio
async def test_eventually_returns_the_first_truthy_value_of_a_sync_or_async_check() -> None:
    counter = itertools.count()
    assert await eventually(lambda: next(counter) >= 3 and "there", interval=0) == "there"
    looks: list[int] = []

    async def check() -> int:
        looks.append(len(looks))
        return len(looks) if len(looks) == 2 else 0

    between: list[None] = []
    assert await eventually(check, interval=0, between=lambda: between.append(None)) == 2
    assert len(between) == 1  # ran once, between the two looks


@pytest.mark.anyio
async def test_eventually_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"the pod to go not reached within 0\.05 s"):
        await eventually(lambda: False, 0.05, what="the pod to go")


def test_eventually_blocking_polls_in_a_thread_of_its_own() -> None:
    counter = itertools.count()
    assert eventually_blocking(lambda: next(counter) == 2, interval=0) is True
    with pytest.raises(AssertionError, match=r"condition not reached within 0\.05 s"):
        eventually_blocking(lambda: 0, 0.05)
