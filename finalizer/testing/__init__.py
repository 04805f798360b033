"""Test kit shipped with the package: a wire-faithful fake Kubernetes API server and helpers."""

from finalizer.testing.fake_kube import FakeKube

__all__ = ["FakeKube"]
