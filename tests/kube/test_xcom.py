"""XCom read over exec and sidecar stop, against the fake server's WebSocket exec."""

from __future__ import annotations

import asyncio
import json

import pytest

from finalizer.exceptions import (
    KubeRequestError,
    KubeTransientError,
    PodNotFoundError,
    SidecarNotRunningError,
    XComExecFailedError,
    XComInvalidJSONError,
    XComTooLargeError,
)
from finalizer.jobs import PodRef
from finalizer.kube import KubeCluster, XComResult
from finalizer.kube.xcom import EMPTY_XCOM_RESULT, XCOM_COMMAND, ExecOutput, exit_code_of, parse_xcom
from finalizer.pod import XCOM_SIDECAR_NAME
from finalizer.testing import FakeKube
from tests.support.kube import NS, running_pod
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

SUCCESS = b'{"metadata":{},"status":"Success"}'
EXIT_3 = json.dumps(
    {
        "metadata": {},
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
).encode()


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (SUCCESS, 0),
        (EXIT_3, 3),
        (None, None),
        (b"", None),
        (b"garbage", None),
        (b'{"status":"Failure"}', None),
    ],
)
def test_exit_code_of(status: bytes | None, code: int | None) -> None:
    assert exit_code_of(status) == code


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (b'{"a": 1}', XComResult(empty=False, value={"a": 1}, size=8)),
        (b"null", XComResult(empty=False, value=None, size=4)),
        (b"[1, 2]\n", XComResult(empty=False, value=[1, 2], size=7)),
        (EMPTY_XCOM_RESULT.encode() + b"\n", XComResult(empty=True)),
        ('"ü€"'.encode(), XComResult(empty=False, value="ü€", size=7)),
    ],
)
def test_parse_xcom(stdout: bytes, expected: XComResult) -> None:
    assert parse_xcom(ExecOutput(stdout, b"", SUCCESS), "pod x") == expected


@pytest.mark.parametrize(
    ("output", "error"),
    [
        (ExecOutput(b"{not json", b"", SUCCESS), XComInvalidJSONError),
        (ExecOutput(b'"\xff"', b"", SUCCESS), XComInvalidJSONError),
        (ExecOutput(b"1", b"cat: boom", EXIT_3), XComExecFailedError),
        (ExecOutput(b"1", b"", None), XComExecFailedError),
    ],
)
def test_parse_xcom_failures(output: ExecOutput, error: type) -> None:
    with pytest.raises(error):
        parse_xcom(output, "pod x")


def test_the_command_is_the_providers() -> None:
    assert XCOM_COMMAND == [
        "/bin/sh",
        "-c",
        "if [ -s /airflow/xcom/return.json ]; then cat /airflow/xcom/return.json; "
        "else echo __airflow_xcom_result_empty__; fi",
    ]


# --- over the wire -------------------------------------------------------------------------------


async def test_read_json_xcom(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    payload = {"rows": 3, "name": "ünïcode €", "nested": {"ok": True, "none": None}}
    fake.write_xcom(NS, "p", json.dumps(payload))
    result = await cluster.exec.read_xcom(NS, "p", uid, max_bytes=1024)
    assert result == XComResult(empty=False, value=payload, size=len(json.dumps(payload).encode()))
    async with cluster.sidecar(PodRef(namespace=NS, name="p", uid=uid)) as sidecar:  # the pipeline's way
        present, value = await sidecar.read_xcom(1024)
    assert (present, value) == (True, payload)
    exec_request = next(r for r in fake.requests if r.verb == "exec")
    assert f"container={XCOM_SIDECAR_NAME}" in exec_request.query


async def test_empty_file_differs_from_json_null(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    assert (await cluster.exec.read_xcom(NS, "p", max_bytes=100)).empty is True  # no file
    fake.write_xcom(NS, "p", "")
    assert (await cluster.exec.read_xcom(NS, "p", max_bytes=100)).empty is True  # empty file
    fake.write_xcom(NS, "p", "null")
    assert await cluster.exec.read_xcom(NS, "p", max_bytes=100) == XComResult(empty=False, value=None, size=4)


async def test_invalid_json(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", "{'python': 'repr'}")
    with pytest.raises(XComInvalidJSONError):
        await cluster.exec.read_xcom(NS, "p", max_bytes=100)


async def test_size_cap(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", json.dumps("x" * 5000))
    with pytest.raises(XComTooLargeError, match="4096"):
        await cluster.exec.read_xcom(NS, "p", max_bytes=4096)
    assert (await cluster.exec.read_xcom(NS, "p", max_bytes=5002)).value == "x" * 5000


async def test_sidecar_not_running(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", "1")
    fake.terminate(NS, "p", XCOM_SIDECAR_NAME, exit_code=0)
    with pytest.raises(SidecarNotRunningError):
        await cluster.exec.read_xcom(NS, "p", max_bytes=100)


async def test_pod_without_sidecar(fake: FakeKube, cluster: KubeCluster) -> None:
    fake.create_pod(NS, name="p", with_xcom_sidecar=False)
    fake.start(NS, "p")
    with pytest.raises(SidecarNotRunningError):
        await cluster.exec.read_xcom(NS, "p", max_bytes=100)


async def test_pod_gone(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.force_delete(NS, "p")
    with pytest.raises(PodNotFoundError):
        await cluster.exec.read_xcom(NS, "p", uid, max_bytes=100)
    # Same name, another pod: ours is gone, and we must not read the other one's XCom.
    running_pod(fake, "p")
    fake.kubelet_forget(NS, "p")
    with pytest.raises(PodNotFoundError, match="now has uid"):
        await cluster.exec.read_xcom(NS, "p", uid, max_bytes=100)


async def test_node_lost_the_containers_is_transient(fake: FakeKube, cluster: KubeCluster) -> None:
    """500 while the API still shows the sidecar running: maybe the node is unreachable, retry."""
    running_pod(fake, "p")
    fake.kubelet_forget(NS, "p")
    with pytest.raises(KubeTransientError) as info:
        await cluster.exec.read_xcom(NS, "p", max_bytes=100)
    assert info.value.status == 500


async def test_400_while_the_sidecar_runs_is_a_terminal_request_error(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    """A 400 the pod cannot explain (sidecar running, same uid) means the API rejected our request.

    The real API answers 400 before the upgrade for a container name not in the pod or a pod with
    no node: both show as "sidecar not running" (see ``test_pod_without_sidecar``). A 400 while the
    sidecar runs is neither, so retrying the same request cannot help: ``KubeRequestError``.
    """
    uid = running_pod(fake, "p")
    fake.write_xcom(NS, "p", "1")
    fake.faults.add("GET", r"/exec", status=400)
    with pytest.raises(KubeRequestError) as info:
        await cluster.exec.read_xcom(NS, "p", uid, max_bytes=100)
    assert info.value.status == 400
    assert not isinstance(info.value, SidecarNotRunningError | PodNotFoundError)
    # The pod was read to rule out the other explanations; the sidecar still holds the XCom.
    assert [r.verb for r in fake.requests][-1] == "get"
    assert (await cluster.exec.read_xcom(NS, "p", uid, max_bytes=100)).value == 1


async def test_exec_refused_with_429_is_transient_with_retry_after(
    fake: FakeKube, cluster: KubeCluster
) -> None:
    running_pod(fake, "p")
    fake.faults.add("GET", r"/exec", plaintext_429=True, retry_after=7)
    with pytest.raises(KubeTransientError) as info:
        await cluster.exec.read_xcom(NS, "p", max_bytes=100)
    assert info.value.status == 429
    assert info.value.retry_after == 7.0


async def test_non_zero_exit(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    output = await cluster.exec._exec(NS, "p", None, ["/bin/sh", "-c", "exit 3"])
    assert exit_code_of(output.status) == 3
    with pytest.raises(XComExecFailedError, match="exit code 3"):
        parse_xcom(output, "pod p")


async def test_connection_reset_mid_session_is_transient(fake: FakeKube, cluster: KubeCluster) -> None:
    """A session cut before its exit status (proxy or node died) is retried, never an XCom failure."""
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", '{"kept": true}')
    session = asyncio.ensure_future(cluster.exec._exec(NS, "p", None, ["/bin/sh", "-c", "sleep 5"]))
    await eventually(lambda: bool(fake.cluster.store.runtime_of(NS, "p").exec_transports))
    assert fake.drop_exec_sessions(NS, "p") == 1
    with pytest.raises(KubeTransientError, match="connection broke before the exit status"):
        await asyncio.wait_for(session, 5)
    # The XCom is still in the sidecar: the retry reads it.
    assert (await cluster.exec.read_xcom(NS, "p", max_bytes=100)).value == {"kept": True}


async def test_sidecar_stop_does_not_need_an_exit_status(fake: FakeKube, cluster: KubeCluster) -> None:
    """The stop's session dies with the container: an abrupt end there is not an error."""
    running_pod(fake, "p")
    stop = asyncio.ensure_future(
        cluster.exec._exec(NS, "p", None, ["/bin/sh", "-c", "sleep 5"], require_status=False)
    )
    await eventually(lambda: bool(fake.cluster.store.runtime_of(NS, "p").exec_transports))
    fake.drop_exec_sessions(NS, "p")
    output = await asyncio.wait_for(stop, 5)
    assert output.status is None
    assert output.stderr == b""


async def test_exec_timeout(fake: FakeKube) -> None:
    from finalizer.kube import KubeSettings, cluster_from_kubeconfig

    running_pod(fake, "p")
    async with cluster_from_kubeconfig(fake.kubeconfig, KubeSettings(exec_timeout=0.3)) as slow:
        with pytest.raises(KubeTransientError, match="timed out"):
            await slow.exec._exec(NS, "p", None, ["/bin/sh", "-c", "sleep 5"])


async def _stop_without_read(cluster: KubeCluster, ref: PodRef) -> None:
    """A job resumed after its read: ``sidecar(ref).stop()`` with no session open (a fresh exec)."""
    async with cluster.sidecar(ref) as sidecar:
        await sidecar.stop()


async def test_stop_sidecar(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    ref = PodRef(namespace=NS, name="p", uid=uid)
    fake.terminate(NS, "p", "base", exit_code=0)
    await _stop_without_read(cluster, ref)
    pod = fake.get_pod(NS, "p")
    sidecar = next(c for c in pod["status"]["containerStatuses"] if c["name"] == XCOM_SIDECAR_NAME)  # type: ignore[index]
    assert "terminated" in sidecar["state"]
    assert pod["status"]["phase"] == "Succeeded"  # type: ignore[index]
    # Already stopped, then gone: both count as stopped.
    await _stop_without_read(cluster, ref)
    fake.force_delete(NS, "p")
    await _stop_without_read(cluster, ref)


async def test_refused_exec_is_explained_even_with_one_slot(fake: FakeKube) -> None:
    """The explanation reads the pod outside the exec's semaphore slot: no self-deadlock."""
    import asyncio

    from finalizer.kube import KubeSettings, cluster_from_kubeconfig

    running_pod(fake, "p")
    fake.terminate(NS, "p", XCOM_SIDECAR_NAME, exit_code=0)
    async with cluster_from_kubeconfig(fake.kubeconfig, KubeSettings(max_concurrency=1)) as one_slot:
        with pytest.raises(SidecarNotRunningError):
            await asyncio.wait_for(one_slot.exec.read_xcom(NS, "p", max_bytes=100), 5)
