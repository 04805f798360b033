"""pytest fixtures for the shipped test kit: ``pytest_plugins = ["finalizer.testing.fixtures"]``.

Users who test their own operators and triggers against the fake get a fresh server per test (no
state leaks between tests) on the loop their test needs: the test's own (``fake_kube``) or a thread
of its own (``fake_kube_thread``, for the sync ``kubernetes`` client and code that runs other loops).
"""

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
