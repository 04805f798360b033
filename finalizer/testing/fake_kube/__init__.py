"""A wire-faithful fake Kubernetes API server (pods, events, batch/v1 Jobs, watch, exec, log) for tests.

Real HTTP and WebSocket on 127.0.0.1 (ephemeral port); unmodified ``kubernetes_asyncio`` and the sync
``kubernetes`` client (and the provider's own ``PodManager``) drive it. No Airflow imports here.

Usage::

    async with FakeKube() as kube:                 # on the running loop
        cfg = kubernetes_asyncio.client.Configuration()
        await kubernetes_asyncio.config.load_kube_config_from_dict(kube.kubeconfig, client_configuration=cfg)
        kube.create_pod("default", name="p")        # KPO-shaped: base + airflow-xcom-sidecar
        kube.start("default", "p")                  # scheduled, running (MODIFIED events, pod Events)
        kube.write_xcom("default", "p", '{"a": 1}')
        kube.terminate("default", "p", "base", exit_code=0, message="done")
        kube.auto_kubelet()                         # API-created pods run by themselves (annotations)
        kube.create_job("default", jobs.job_manifest("j", parallelism=3))  # the controller makes 3 pods

    with FakeKube.in_thread() as kube: ...          # own loop in a daemon thread; helpers thread-safe

Module map: ``server`` (FakeKube facade), ``cluster`` (scheduler/kubelet actions, API delete semantics),
``store`` (objects, resourceVersion, history, watch fan-out), ``events`` (core/v1 Events), ``lifecycle``
(pure pod-status edits), ``routes``/``watch``/``exec``/``logs``/``paging`` (HTTP handlers),
``shell`` (exec command emulator), ``faults`` (fault rules, request log), ``kubelet`` (auto-kubelet),
``selectors``, ``wire`` (Status bodies, ParseBool, timestamps); Jobs: ``jobs`` (store, manifest
helper), ``job_spec`` (admission), ``job_status`` (the controller's pure decision), ``job_controller``
(pods per parallelism/completions, retries, deadline, garbage collection), ``job_routes`` (HTTP).
"""

from finalizer.testing.fake_kube.faults import FaultRule, RequestRecord
from finalizer.testing.fake_kube.lifecycle import XCOM_FILE, XCOM_SIDECAR
from finalizer.testing.fake_kube.server import FakeKube

__all__ = ["XCOM_FILE", "XCOM_SIDECAR", "FakeKube", "FaultRule", "RequestRecord"]
