"""The dedicated loop's implementation: uvloop when installed (auto), asyncio on request."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from finalizer.exceptions import ConfigurationError
from finalizer.loops import loop_factory, loop_name


def test_auto_and_uvloop_take_uvloop_when_installed() -> None:
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is None


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an environment without uvloop imports
    assert loop_factory("auto") is None
    with pytest.raises(ConfigurationError, match="uvloop is not installed"):
        loop_factory("uvloop")


@pytest.mark.parametrize(
    ("factory", "name"), [(uvloop.new_event_loop, "uvloop"), (asyncio.new_event_loop, "asyncio")]
)
def test_loop_name(factory: object, name: str) -> None:
    loop = factory()  # type: ignore[operator]
    try:
        assert loop_name(loop) == name
    finally:
        loop.close()
