"""What a test needs but the machine may lack: skip locally with the reason, fail under ``CI=true``.

A skip on a developer's machine says what is missing; on CI (``CI=true``) the same gap fails the
run, so a broken install never passes as a green run of skips.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

__all__ = ["require", "unavailable"]


def unavailable(reason: str) -> NoReturn:
    """This test cannot run here: a failure under ``CI=true``, a skip saying ``reason`` elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: what a test needs must be there)", pytrace=False)
    pytest.skip(reason)


def require(module_name: str) -> ModuleType:
    """Import ``module_name`` as ``pytest.importorskip`` does, but never skip silently on CI."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        unavailable(f"{module_name} is not importable ({exc}); bash scripts/setup installs the test extras")
