"""Test kit shipped with the package: a wire-faithful fake Kubernetes API server and helpers.

No Kubernetes API server can run where this project is tested, demonstrated and benchmarked, so the
fake ships with the package: the demo, the benchmarks and users' own tests drive it with unmodified
clients. The finalizer core never imports it (an import-linter contract).
"""

from finalizer.testing.fake_kube import FakeKube

__all__ = ["FakeKube"]
