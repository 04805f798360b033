"""The sync ``kubernetes`` client, as KubernetesPodOperator uses it on workers, against the in-thread fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import XCOM_READ
from tests.support.optional import require
from tests.support.polling import eventually_blocking

SIDECAR = "airflow-xcom-sidecar"


@pytest.fixture
def v1(fake_kube_thread: FakeKube) -> Iterator[Any]:
    cfg = client.Configuration()
    config.load_kube_config_from_dict(fake_kube_thread.kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


def test_create_read_list(fake_kube_thread: FakeKube, v1: Any) -> None:
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="w", labels={"dag_id": "d"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="base", image="busybox")]),
    )
    created = v1.create_namespaced_pod("default", body)
    assert created.metadata.uid
    assert v1.read_namespaced_pod("w", "default").metadata.uid == created.metadata.uid
    pods = v1.list_namespaced_pod("default", label_selector="dag_id=d")
    assert [p.metadata.name for p in pods.items] == ["w"]
    with pytest.raises(ApiException) as info:
        v1.read_namespaced_pod("nope", "default")
    assert info.value.status == 404


def test_exec_xcom_read_via_stream(fake_kube_thread: FakeKube, v1: Any) -> None:
    fake_kube_thread.create_pod("default", name="p")
    fake_kube_thread.start("default", "p")
    fake_kube_thread.write_xcom("default", "p", '{"answer": 42}')
    resp = stream(
        v1.connect_get_namespaced_pod_exec,
        "p",
        "default",
        container=SIDECAR,
        command=["/bin/sh", "-c", XCOM_READ],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=10)
    assert json.loads(resp.read_stdout()) == {"answer": 42}
    assert resp.returncode == 0
    resp.close()


def test_provider_pod_manager_extracts_and_kills(fake_kube_thread: FakeKube, v1: Any) -> None:
    """The provider's own ``extract_xcom_json`` and ``extract_xcom_kill`` run unmodified."""
    pod_manager_module = require("airflow.providers.cncf.kubernetes.utils.pod_manager")
    fake_kube_thread.create_pod("default", name="p")
    fake_kube_thread.start("default", "p")
    fake_kube_thread.write_xcom("default", "p", '{"rows": [1, 2, 3]}')
    fake_kube_thread.terminate("default", "p", "base")
    manager = pod_manager_module.PodManager(kube_client=v1)
    pod = v1.read_namespaced_pod("p", "default")
    assert json.loads(manager.extract_xcom_json(pod)) == {"rows": [1, 2, 3]}
    manager.extract_xcom_kill(pod)
    after = fake_kube_thread.get_pod("default", "p")
    assert after is not None
    sidecar = next(c for c in after["status"]["containerStatuses"] if c["name"] == SIDECAR)
    assert sidecar["state"]["terminated"]["exitCode"] == 0
    assert after["status"]["phase"] == "Succeeded"


def test_provider_empty_xcom_marker(fake_kube_thread: FakeKube, v1: Any) -> None:
    pod_manager_module = require("airflow.providers.cncf.kubernetes.utils.pod_manager")
    fake_kube_thread.create_pod("default", name="p")
    fake_kube_thread.start("default", "p")
    manager = pod_manager_module.PodManager(kube_client=v1)
    result = manager.extract_xcom_json(v1.read_namespaced_pod("p", "default"))
    assert result.rstrip() == pod_manager_module.EMPTY_XCOM_RESULT


def test_delete_with_uid_precondition(fake_kube_thread: FakeKube, v1: Any) -> None:
    pod = fake_kube_thread.create_pod("default", name="p")
    fake_kube_thread.start("default", "p")
    with pytest.raises(ApiException) as info:
        v1.delete_namespaced_pod("p", "default", body=client.V1DeleteOptions(preconditions={"uid": "x"}))
    assert info.value.status == 409
    v1.delete_namespaced_pod(
        "p",
        "default",
        body=client.V1DeleteOptions(preconditions={"uid": pod["metadata"]["uid"]}),
        grace_period_seconds=0,
    )
    assert fake_kube_thread.get_pod("default", "p") is None


def test_logs(fake_kube_thread: FakeKube, v1: Any) -> None:
    """Read raw, as the provider does (the sync client's preload turns text bodies into ``"b'...'"``)."""
    fake_kube_thread.create_pod("default", name="p")
    fake_kube_thread.start("default", "p")
    fake_kube_thread.set_logs("default", "p", "base", ["one", "two", "three"])
    resp = v1.read_namespaced_pod_log("p", "default", container="base", _preload_content=False)
    assert resp.data == b"one\ntwo\nthree\n"
    resp = v1.read_namespaced_pod_log("p", "default", container="base", tail_lines=1, _preload_content=False)
    assert resp.data == b"three\n"


def test_provider_reads_pod_events(fake_kube_thread: FakeKube, v1: Any) -> None:
    pod_manager_module = require("airflow.providers.cncf.kubernetes.utils.pod_manager")
    fake_kube_thread.create_pod("default", name="p")
    fake_kube_thread.unschedulable("default", "p", message="0/1 nodes are available: 1 Insufficient memory.")
    manager = pod_manager_module.PodManager(kube_client=v1)
    events = manager.read_pod_events(v1.read_namespaced_pod("p", "default"))
    assert [(e.reason, e.type) for e in events.items] == [("FailedScheduling", "Warning")]


def test_provider_pod_manager_worker_flow_with_auto_kubelet(fake_kube_thread: FakeKube, v1: Any) -> None:
    """What KubernetesPodOperator does on a worker, with the provider's own PodManager, unattended."""
    import asyncio

    pod_manager_module = require("airflow.providers.cncf.kubernetes.utils.pod_manager")
    fake_kube_thread.auto_kubelet(start_delay=0.05, run_seconds=0.3)
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name="kpo",
            namespace="default",
            annotations={"fake-kube/xcom": '{"rows": 3}', "fake-kube/logs": "starting\ndone"},
        ),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(name="base", image="python:3.12"),
                client.V1Container(name=SIDECAR, image="alpine", command=["sh", "-c", "trap"]),
            ],
        ),
    )
    manager = pod_manager_module.PodManager(kube_client=v1)
    pod = manager.create_pod(body)
    asyncio.run(manager.await_pod_start(pod, schedule_timeout=10, startup_timeout=10, check_interval=0.1))
    status = manager.fetch_container_logs(pod, "base", follow=True, post_termination_timeout=1)
    assert status.running is False
    manager.await_container_completion(pod, "base", polling_time=0.1)
    assert json.loads(manager.extract_xcom(pod)) == {"rows": 3}
    manager.delete_pod(pod)  # graceful: the pod leaves the API a moment later
    eventually_blocking(lambda: fake_kube_thread.get_pod("default", "kpo") is None, 5, what="the pod gone")
    verbs = fake_kube_thread.request_counts()
    assert verbs[("create", "pods")] == 1
    assert verbs[("exec", "pods")] == 2  # XCom read, sidecar kill
