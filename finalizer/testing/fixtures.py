"""pytest fixtures for the shipped test kit: ``pytest_plugins = ["finalizer.testing.fixtures"]``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from finalizer.testing.fake_kube import FakeKube


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    """A fresh fake API server on the test's event loop (anyio tests, asyncio backend)."""
    async with FakeKube(bookmark_interval=0.2) as kube:
        yield kube


@pytest.fixture
def fake_kube_thread() -> Iterator[FakeKube]:
    """A fresh fake API server on its own loop in a daemon thread (for sync clients and other loops)."""
    with FakeKube.in_thread(bookmark_interval=0.2) as kube:
        yield kube
