"""Small wire-reading helpers shared by the fake_kube tests."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import WSMsgType

XCOM_READ = (
    "if [ -s /airflow/xcom/return.json ]; then cat /airflow/xcom/return.json; "
    "else echo __airflow_xcom_result_empty__; fi"
)


async def read_json(resp: Any) -> Any:
    """Body of a ``_preload_content=False`` response, parsed."""
    return json.loads(await resp.read())


async def open_exec(
    core_ws: Any,
    name: str,
    command: list[str],
    *,
    namespace: str = "default",
    stdin: bool = False,
    preload: bool = False,
    **kwargs: Any,
) -> Any:
    """``connect_get_namespaced_pod_exec`` as these tests use it: stdout and stderr, no tty.

    Without ``preload`` it returns the WebSocket context manager; with it, the client's own result.
    """
    if not preload:
        kwargs["_preload_content"] = False
    return await core_ws.connect_get_namespaced_pod_exec(
        name, namespace, command=command, stdin=stdin, stdout=True, stderr=True, tty=False, **kwargs
    )


async def exec_frames(
    core_ws: Any,
    name: str,
    command: list[str],
    container: str = "airflow-xcom-sidecar",
    namespace: str = "default",
) -> list[tuple[int, bytes]]:
    """Run an exec and return every (channel, payload) frame, checking they are all binary."""
    ws_ctx = await open_exec(core_ws, name, command, namespace=namespace, container=container)
    frames: list[tuple[int, bytes]] = []
    async with ws_ctx as ws:
        async for msg in ws:
            assert msg.type == WSMsgType.BINARY
            frames.append((msg.data[0], msg.data[1:]))
    return frames


def channel(frames: list[tuple[int, bytes]], number: int) -> bytes:
    return b"".join(data for ch, data in frames if ch == number)


def exit_status(frames: list[tuple[int, bytes]]) -> Any:
    raw = channel(frames, 3)
    return json.loads(raw) if raw else None


async def watch_lines(core: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Run a watch to its end (use ``timeout_seconds``) and return the parsed events."""
    resp = await core.list_namespaced_pod("default", watch=True, _preload_content=False, **kwargs)
    assert resp.status == 200
    events = []
    async for line in resp.content:
        events.append(json.loads(line))
    return events


async def exec_handshake(core_ws: Any, name: str, namespace: str = "default", **kwargs: Any) -> None:
    """Open (and close) an exec WebSocket; raises ``aiohttp.WSServerHandshakeError`` on a refused upgrade."""
    ws_ctx = await open_exec(core_ws, name, ["true"], namespace=namespace, **kwargs)
    async with ws_ctx:
        pass
