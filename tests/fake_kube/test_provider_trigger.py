"""The provider's own async side (``KubernetesPodTrigger`` on kubernetes_asyncio) against the fake.

This is the classic path the finalizer replaces; it must run unmodified here too, or demos and
benchmarks comparing the two would compare against a broken baseline.
"""

from __future__ import annotations

import datetime

import anyio
import pytest

from finalizer.testing import FakeKube
from tests.support.optional import require

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("exit_code", "status"), [(0, "success"), (2, "failed")])
async def test_kubernetes_pod_trigger_reports_completion(
    fake_kube: FakeKube, exit_code: int, status: str
) -> None:
    trigger_module = require("airflow.providers.cncf.kubernetes.triggers.pod")
    fake_kube.create_pod("default", name="classic")
    fake_kube.start("default", "classic")
    fake_kube.set_logs("default", "classic", "base", ["working"])
    trigger = trigger_module.KubernetesPodTrigger(
        pod_name="classic",
        pod_namespace="default",
        trigger_start_time=datetime.datetime.now(datetime.UTC),
        base_container_name="base",
        config_dict=fake_kube.kubeconfig,
        poll_interval=0.1,
        startup_check_interval=0.1,
        get_logs=False,
    )
    events = trigger.run()
    fake_kube.terminate("default", "classic", "base", exit_code=exit_code)
    with anyio.fail_after(30):
        event = await events.__anext__()
    await events.aclose()
    assert event.payload["status"] == status
    assert event.payload["name"] == "classic"
    assert fake_kube.request_counts()[("get", "pods")] >= 1
