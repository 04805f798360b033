"""Fixtures for the end-to-end tests: the fake cluster (a thread here), its kubeconfig file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from finalizer.testing.fake_kube import FakeKube


@pytest.fixture(scope="session")
def fake_kube() -> Iterator[FakeKube]:
    with FakeKube.in_thread() as kube:
        yield kube


@pytest.fixture(scope="session")
def kubeconfig_path(fake_kube: FakeKube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config.json")
