"""One exec session for a job's XCom read and its sidecar stop, against the fake's WebSocket exec."""

from __future__ import annotations

import asyncio
import json

import pytest

from finalizer.exceptions import (
    PodNotFoundError,
    SidecarNotRunningError,
    XComExecFailedError,
    XComInvalidJSONError,
    XComTooLargeError,
)
from finalizer.jobs import PodRef
from finalizer.kube import KubeCluster
from finalizer.kube.sidecar import SidecarSession, _marker_status
from finalizer.pod import XCOM_SIDECAR_NAME
from finalizer.testing import FakeKube
from tests.support.kube import NS, running_pod

pytestmark = pytest.mark.anyio


def _execs(fake: FakeKube) -> int:
    return sum(1 for r in fake.requests if r.verb == "exec")


def _sidecar_state(fake: FakeKube, name: str = "p") -> str:
    pod = fake.get_pod(NS, name)
    status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == XCOM_SIDECAR_NAME)  # type: ignore[index]
    return next(iter(status["state"]))


def _session(cluster: KubeCluster, uid: str | None = None) -> SidecarSession:
    return SidecarSession(cluster.exec, NS, "p", uid)


async def test_read_then_stop_is_one_exec_session(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    payload = {"rows": 3, "name": "ünïcode €", "text": "ends without a newline"}
    fake.write_xcom(NS, "p", json.dumps(payload))
    fake.terminate(NS, "p", "base", exit_code=0)
    async with _session(cluster, uid) as session:
        result = await session.read_xcom(1024)
        assert (result.empty, result.value) == (False, payload)
        assert _sidecar_state(fake) == "running"  # the read alone stops nothing
        await session.stop()
    assert _sidecar_state(fake) == "terminated"
    assert fake.get_pod(NS, "p")["status"]["phase"] == "Succeeded"  # type: ignore[index]
    assert _execs(fake) == 1
    exec_request = next(r for r in fake.requests if r.verb == "exec")
    assert "stdin=true" in exec_request.query.lower()


@pytest.mark.parametrize(
    ("content", "empty", "value"),
    [
        (None, True, None),  # no file
        ("", True, None),  # empty file
        ("null", False, None),
        ("[1, 2]\n", False, [1, 2]),
        ('"__kpo_finalizer_end_0000000000000000__"', False, "__kpo_finalizer_end_0000000000000000__"),
    ],
)
async def test_read_values(
    fake: FakeKube, cluster: KubeCluster, content: str | None, empty: bool, value: object
) -> None:
    running_pod(fake, "p")
    if content is not None:
        fake.write_xcom(NS, "p", content)
    async with _session(cluster) as session:
        result = await session.read_xcom(100)
    assert (result.empty, result.value) == (empty, value)


async def test_invalid_json_and_size_cap(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", "{'python': 'repr'}")
    async with _session(cluster) as session:
        with pytest.raises(XComInvalidJSONError):
            await session.read_xcom(100)
    fake.write_xcom(NS, "p", json.dumps("x" * 5000))
    async with _session(cluster) as session:
        with pytest.raises(XComTooLargeError, match="4096"):
            await session.read_xcom(4096)
        # The failed read closed its session; the stop still works, with a fresh exec.
        await session.stop()
    assert _sidecar_state(fake) == "terminated"


async def test_stopped_sidecar_is_explained(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.terminate(NS, "p", XCOM_SIDECAR_NAME, exit_code=0)
    async with _session(cluster) as session:
        with pytest.raises(SidecarNotRunningError):
            await session.read_xcom(100)


async def test_gone_pod_and_stopped_sidecar(fake: FakeKube, cluster: KubeCluster) -> None:
    uid = running_pod(fake, "p")
    fake.force_delete(NS, "p")
    async with _session(cluster, uid) as session:
        with pytest.raises(PodNotFoundError):
            await session.read_xcom(100)
        await session.stop()  # gone counts as stopped


async def test_stop_after_the_session_broke_uses_a_fresh_exec(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", "1")
    async with _session(cluster) as session:
        assert (await session.read_xcom(100)).value == 1
        fake.drop_exec_sessions(NS, "p")
        await session.stop()
    assert _sidecar_state(fake) == "terminated"
    assert _execs(fake) == 2


async def test_resumed_job_stops_with_a_fresh_exec(fake: FakeKube, cluster: KubeCluster) -> None:
    """A job resumed after its read (no session) still stops the sidecar, through the seam."""
    uid = running_pod(fake, "p")
    async with cluster.sidecar(PodRef(namespace=NS, name="p", uid=uid)) as sidecar:
        await sidecar.stop()
    assert _sidecar_state(fake) == "terminated"
    assert _execs(fake) == 1


async def test_retried_read_opens_a_new_session(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.write_xcom(NS, "p", '{"a": 1}')
    async with _session(cluster) as session:
        assert (await session.read_xcom(100)).value == {"a": 1}
        assert (await session.read_xcom(100)).value == {"a": 1}
    assert _execs(fake) == 2


@pytest.mark.parametrize(
    ("script", "message"),
    [
        # The read script's ``cat`` failing (the fake cannot stage that inside the provider's
        # script, so the same shape is sent by hand): its status on the marker line, stderr too.
        (b"cat /airflow/xcom/gone.json\necho END $?\n", "exit code 1"),
        (b"no-such-command\necho END $?\n", "exit code 127"),
        # The shell ends (with a status) before the marker.
        (b"exit 3\n", "exit code 3"),
    ],
)
async def test_a_failed_status_stderr_or_an_early_exit_fails_the_read(
    fake: FakeKube, cluster: KubeCluster, script: bytes, message: str
) -> None:
    running_pod(fake, "p")
    async with _session(cluster) as session:
        ws = await session._connect()
        await ws.send_bytes(b"\x00" + script)
        with pytest.raises(XComExecFailedError, match=message):
            await asyncio.wait_for(session._until_marker(ws, b"END", 100, 100), 5)


@pytest.mark.parametrize(
    ("stdout", "found"),
    [
        (b'{"a": 1}M 0\n', (0, 8)),
        (b"[1]\nM 0\n", (0, 4)),
        (b"M 1\n", (1, 0)),
        (b"M 127\n", (127, 0)),
        (b'{"a": 1}M 0', None),  # the line is not complete yet
        (b'{"a": 1}M \n', None),  # no status yet
        (b"M 0\n{}", None),  # the marker must end the output
        (b"", None),
    ],
)
def test_marker_status(stdout: bytes, found: tuple[int, int] | None) -> None:
    assert _marker_status(bytearray(stdout), b"M") == found


async def test_clear_requests_also_forgets_exec_commands(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    async with _session(cluster) as session:
        await session.read_xcom(100)
    assert [c.text for c in fake.exec_commands(NS, "p")][-1].startswith("echo __kpo_finalizer_end_")
    fake.clear_requests()
    assert fake.exec_commands() == []
    assert _execs(fake) == 0
