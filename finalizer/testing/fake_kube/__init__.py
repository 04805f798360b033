"""A wire-faithful fake Kubernetes API server (pods, watch, exec, log) for tests, demo and benchmarks.

Real HTTP and WebSocket on 127.0.0.1; unmodified ``kubernetes_asyncio`` and the sync ``kubernetes``
client drive it. No Airflow imports here: it works without the ``airflow`` extra.
"""

from finalizer.testing.fake_kube.faults import FaultRule, RequestRecord
from finalizer.testing.fake_kube.lifecycle import XCOM_FILE, XCOM_SIDECAR
from finalizer.testing.fake_kube.server import FakeKube

__all__ = ["XCOM_FILE", "XCOM_SIDECAR", "FakeKube", "FaultRule", "RequestRecord"]
