"""Kubernetes test helpers: fast client settings, and a running pod on the fake cluster."""

from __future__ import annotations

from api_client.backoff import RetryPolicy
from finalizer.kube import KubeSettings
from finalizer.testing import FakeKube

__all__ = ["FAST", "NS", "running_pod"]

NS = "default"

#: Short timeouts and fast retries, so fault tests finish in well under a second each.
FAST = KubeSettings(
    connect_timeout=2.0,
    read_timeout=5.0,
    watch_timeout_seconds=30,
    exec_timeout=5.0,
    watch_retry=RetryPolicy(max_attempts=10**6, base_delay=0.05, max_delay=0.2, deadline=None, jitter=0.0),
    resolve_retry=RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.2, deadline=10.0, jitter=0.0),
)


def running_pod(fake: FakeKube, name: str, *, labels: dict[str, str] | None = None, ns: str = NS) -> str:
    """Create and start a pod with the XCom sidecar; returns its uid."""
    fake.create_pod(ns, name=name, labels=labels)
    pod = fake.start(ns, name)
    return str(pod["metadata"]["uid"])
