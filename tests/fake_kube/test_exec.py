"""Exec over WebSocket v4 through unmodified kubernetes_asyncio."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import XCOM_READ, channel, exec_frames, exec_handshake, exit_status, open_exec

pytestmark = pytest.mark.anyio

SIDECAR = "airflow-xcom-sidecar"


def running_pod(kube: FakeKube, name: str = "p") -> None:
    kube.create_pod("default", name=name)
    kube.start("default", name)


async def test_xcom_read_returns_file_bytes_and_success(fake_kube: FakeKube, core_ws: Any) -> None:
    running_pod(fake_kube)
    payload = '{"ok": true, "text": "h\u00e9llo \u2603"}'
    fake_kube.write_xcom("default", "p", payload)
    fake_kube.terminate("default", "p", "base")
    frames = await exec_frames(core_ws, "p", ["/bin/sh", "-c", XCOM_READ])
    assert frames[0] == (1, b"")  # one 1-byte frame on the lowest output channel opens the stream
    assert frames[1:2] == [(1, payload.encode())]
    assert channel(frames, 1).decode() == payload
    assert channel(frames, 2) == b""
    assert exit_status(frames) == {"metadata": {}, "status": "Success"}


async def test_xcom_read_of_empty_file_prints_marker(fake_kube: FakeKube, core_ws: Any) -> None:
    running_pod(fake_kube)
    fake_kube.write_xcom("default", "p", "")
    frames = await exec_frames(core_ws, "p", ["/bin/sh", "-c", XCOM_READ])
    assert channel(frames, 1) == b"__airflow_xcom_result_empty__\n"


async def test_cat_missing_file_is_nonzero_exit(fake_kube: FakeKube, core_ws: Any) -> None:
    running_pod(fake_kube)
    frames = await exec_frames(core_ws, "p", ["cat", "/airflow/xcom/return.json"])
    assert b"No such file" in channel(frames, 2)
    status = exit_status(frames)
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"][0] == {"reason": "ExitCode", "message": "1"}


async def test_repeated_command_params_arrive_in_order(fake_kube: FakeKube, core_ws: Any) -> None:
    running_pod(fake_kube)
    fake_kube.write_xcom("default", "p", "[1, 2]")
    frames = await exec_frames(core_ws, "p", ["cat", "/airflow/xcom/return.json"])
    assert channel(frames, 1) == b"[1, 2]"
    assert next(r.query for r in fake_kube.requests if r.verb == "exec").count("command=") == 2


async def test_utf8_split_across_frames_is_clients_problem_not_ours(
    fake_kube: FakeKube, core_ws: Any
) -> None:
    """Large payloads arrive intact when channel-1 bytes are joined before decoding."""
    running_pod(fake_kube)
    payload = json.dumps({"blob": "\u2603" * 50_000})
    fake_kube.write_xcom("default", "p", payload)
    frames = await exec_frames(core_ws, "p", ["cat", "/airflow/xcom/return.json"])
    assert json.loads(channel(frames, 1).decode()) == json.loads(payload)


@pytest.mark.parametrize(
    "command",
    [["kill", "-s", "SIGINT", "1"], ["kill", "-2", "1"], ["sh", "-c", "kill -INT 1"]],
)
async def test_sidecar_stop_terminates_container_exit_zero(
    fake_kube: FakeKube, core_ws: Any, command: list[str]
) -> None:
    running_pod(fake_kube)
    fake_kube.terminate("default", "p", "base")
    frames = await exec_frames(core_ws, "p", command)
    assert exit_status(frames) == {"metadata": {}, "status": "Success"}
    pod = fake_kube.get_pod("default", "p")
    assert pod is not None
    sidecar = next(c for c in pod["status"]["containerStatuses"] if c["name"] == SIDECAR)
    assert sidecar["state"]["terminated"]["exitCode"] == 0
    assert pod["status"]["phase"] == "Succeeded"


async def test_provider_stdin_kill_sent_as_binary_frame(fake_kube: FakeKube, core_ws: Any) -> None:
    """The provider's ``extract_xcom_kill`` form: a shell reading stdin; no stdin EOF is ever sent."""
    running_pod(fake_kube)
    ws_ctx = await open_exec(core_ws, "p", ["/bin/sh"], container=SIDECAR, stdin=True)
    async with ws_ctx as ws:
        await ws.send_bytes(b"\x00kill -2 $(pgrep -u $(id -u) -f 'sh')\n")
        frames = [(m.data[0], m.data[1:]) async for m in ws]
    status = exit_status(frames)
    assert status["details"]["causes"][0]["message"] == "137"  # the shell died with its container
    pod = fake_kube.get_pod("default", "p")
    assert pod is not None
    sidecar = next(c for c in pod["status"]["containerStatuses"] if c["name"] == SIDECAR)
    assert sidecar["state"]["terminated"]["exitCode"] == 0


async def test_a_stdin_shell_expands_the_last_exit_status(fake_kube: FakeKube, core_ws: Any) -> None:
    """``$?`` in a line is the previous line's exit code, as sh does (the finalizer's read marker)."""
    running_pod(fake_kube)
    ws_ctx = await open_exec(core_ws, "p", ["/bin/sh"], container=SIDECAR, stdin=True)
    async with ws_ctx as ws:
        await ws.send_bytes(b"\x00false\necho a $?\ntrue\necho b $?\nexit 0\n")
        frames = [(m.data[0], m.data[1:]) async for m in ws]
    assert b"".join(data for channel, data in frames if channel == 1) == b"a 1\nb 0\n"


async def test_session_ends_when_container_stops(fake_kube: FakeKube, core_ws: Any) -> None:
    running_pod(fake_kube)
    ws_ctx = await open_exec(core_ws, "p", ["sleep", "30"], container=SIDECAR)
    async with ws_ctx as ws:
        opened = await ws.receive()
        assert opened.data == b"\x01"
        fake_kube.terminate("default", "p", SIDECAR)
        with anyio_fail_after(5):
            rest = [(m.data[0], m.data[1:]) async for m in ws]
    assert exit_status(rest)["details"]["causes"][0]["message"] == "137"


def anyio_fail_after(seconds: float) -> Any:
    import anyio

    return anyio.fail_after(seconds)


async def test_text_stdin_frames_are_accepted(fake_kube: FakeKube) -> None:
    running_pod(fake_kube)
    fake_kube.write_xcom("default", "p", "42")
    url = (
        f"{fake_kube.url}/api/v1/namespaces/default/pods/p/exec?container={SIDECAR}"
        "&command=sh&stdin=true&stdout=true&stderr=true"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("v5.channel.k8s.io", "v4.channel.k8s.io")) as ws,
    ):
        assert ws.protocol == "v4.channel.k8s.io"
        await ws.send_str("\x00cat /airflow/xcom/return.json\n")
        await ws.send_str("\x00exit 3\n")
        frames = [(m.data[0], m.data[1:]) async for m in ws]
    assert channel(frames, 1) == b"42"
    assert exit_status(frames)["details"]["causes"][0]["message"] == "3"


@pytest.mark.parametrize(
    ("setup", "container", "status", "text"),
    [
        ("missing", SIDECAR, 404, '"reason":"NotFound"'),
        ("terminated", SIDECAR, 500, f'container not found ("{SIDECAR}")'),
        ("pending", SIDECAR, 400, "does not have a host assigned"),
        ("scheduled", SIDECAR, 500, f'container not found ("{SIDECAR}")'),
        ("forgotten", SIDECAR, 500, f'container not found ("{SIDECAR}")'),
        ("unreachable", SIDECAR, 500, "error dialing backend"),
        ("running", "nope", 400, "container nope is not valid for pod p"),
        ("running", "", 400, "a container name must be specified for pod p, choose one of: [base airflow"),
    ],
)
async def test_pre_upgrade_errors_are_plain_http(
    fake_kube: FakeKube, core_ws: Any, setup: str, container: str, status: int, text: str
) -> None:
    if setup != "missing":
        fake_kube.create_pod("default", name="p")
    if setup in ("running", "terminated", "forgotten", "unreachable"):
        fake_kube.start("default", "p")
    if setup == "scheduled":
        fake_kube.schedule("default", "p")
    if setup == "terminated":
        fake_kube.terminate("default", "p", SIDECAR)
    if setup == "forgotten":
        fake_kube.kubelet_forget("default", "p")
    if setup == "unreachable":
        fake_kube.node_unreachable("default", "p")
    kwargs = {"container": container} if container else {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await exec_handshake(core_ws, "p", **kwargs)
    assert info.value.status == status
    async with aiohttp.ClientSession() as session:
        query = f"container={container}&" if container else ""
        async with session.get(
            f"{fake_kube.url}/api/v1/namespaces/default/pods/p/exec?{query}command=true&stdout=true",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Protocol": "v4.channel.k8s.io",
            },
        ) as resp:
            assert resp.status == status
            assert text in await resp.text()


async def test_exec_after_eviction_fails_404(fake_kube: FakeKube, core_ws: Any) -> None:
    running_pod(fake_kube)
    fake_kube.write_xcom("default", "p", "{}")
    fake_kube.evict("default", "p")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await exec_handshake(core_ws, "p", container=SIDECAR)
    assert info.value.status == 404


async def test_preloaded_exec_mangles_nothing_we_control(fake_kube: FakeKube, core_ws: Any) -> None:
    """The default (preload) mode works against the fake; its known JSON-mangling is the client's."""
    running_pod(fake_kube)
    fake_kube.write_xcom("default", "p", '{"ok": true}')
    out = await open_exec(core_ws, "p", ["cat", "/airflow/xcom/return.json"], container=SIDECAR, preload=True)
    assert "ok" in str(out)


async def test_unknown_command_is_127(fake_kube: FakeKube, core_ws: Any) -> None:
    running_pod(fake_kube)
    frames = await exec_frames(core_ws, "p", ["frobnicate"])
    assert exit_status(frames)["details"]["causes"][0]["message"] == "127"
    assert b"not found" in channel(frames, 2)


async def test_concurrent_exec_sessions(fake_kube: FakeKube, core_ws: Any) -> None:
    for index in range(20):
        running_pod(fake_kube, f"p{index}")
        fake_kube.write_xcom("default", f"p{index}", str(index))
    results = await asyncio.gather(
        *(exec_frames(core_ws, f"p{i}", ["cat", "/airflow/xcom/return.json"]) for i in range(20))
    )
    assert [channel(frames, 1) for frames in results] == [str(i).encode() for i in range(20)]


@pytest.mark.parametrize(("stdout", "stderr", "opening_channel"), [("true", "true", 1), ("false", "true", 2)])
async def test_opening_frame_goes_to_lowest_output_channel(
    fake_kube: FakeKube, stdout: str, stderr: str, opening_channel: int
) -> None:
    running_pod(fake_kube)
    url = (
        f"{fake_kube.url}/api/v1/namespaces/default/pods/p/exec?container=base"
        f"&command=echo&command=hi&stdout={stdout}&stderr={stderr}"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws,
    ):
        frames = [(m.data[0], m.data[1:]) async for m in ws]
    assert frames[0] == (opening_channel, b"")
    assert channel(frames, 1) == (b"hi\n" if stdout == "true" else b"")
    assert exit_status(frames) == {"metadata": {}, "status": "Success"}


async def test_no_stream_requested_is_400(fake_kube: FakeKube) -> None:
    """PodExecOptions booleans default to false: an exec asking for no stream is refused."""
    running_pod(fake_kube)
    url = f"{fake_kube.url}/api/v1/namespaces/default/pods/p/exec?container=base&command=true"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, protocols=("v4.channel.k8s.io",))
    assert info.value.status == 400


async def test_server_close_ends_open_exec_sessions() -> None:
    import anyio

    kube = FakeKube()
    await kube.open()
    running_pod(kube)
    url = (
        f"{kube.url}/api/v1/namespaces/default/pods/p/exec"
        f"?container={SIDECAR}&command=sleep&command=60&stdout=1"
    )
    rest: list[tuple[int, bytes]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws,
    ):
        assert (await ws.receive()).data == b"\x01"

        async def drain() -> None:
            rest.extend([(m.data[0], m.data[1:]) async for m in ws])

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(drain)
                await kube.close()
    assert exit_status(rest)["reason"] == "NonZeroExitCode"


async def test_drop_exec_sessions_cuts_the_connection_without_a_status(
    fake_kube: FakeKube, core_ws: Any
) -> None:
    running_pod(fake_kube)
    assert fake_kube.drop_exec_sessions("default", "p") == 0
    ws_ctx = await open_exec(core_ws, "p", ["sleep", "30"], container=SIDECAR)
    async with ws_ctx as ws:
        opened = await ws.receive()
        assert opened.data == b"\x01"
        assert fake_kube.drop_exec_sessions("default", "p") == 1
        with anyio_fail_after(5):
            rest = [m async for m in ws]
        assert all(m.type != aiohttp.WSMsgType.BINARY for m in rest)  # no channel-3 status
        assert ws.exception() is not None or ws.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE
    # The container still runs: the next session works.
    frames = await exec_frames(core_ws, "p", ["true"])
    assert exit_status(frames) == {"metadata": {}, "status": "Success"}
