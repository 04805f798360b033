"""``pods/{name}/exec`` over WebSocket, subprotocol ``v4.channel.k8s.io``.

Checks the real API server and kubelet make *before* the upgrade answer as plain HTTP (404 Status for
a missing pod; 400 Status for a bad container name or an unscheduled pod; 500 text
``container not found ("…")`` when the container does not run). After the upgrade every frame
is binary, first byte = channel; one 1-byte frame on the lowest output channel opens the stream;
channel 3 carries the exit status; then a normal close. Stdin is accepted as binary *and* text
frames (the sync ``kubernetes.stream`` client sends text). A session ends when its container stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Callable

from aiohttp import WSMsgType, web

from finalizer.testing.fake_kube import lifecycle, shell
from finalizer.testing.fake_kube.cluster import Cluster, ExecCommand
from finalizer.testing.fake_kube.faults import mark_opened
from finalizer.testing.fake_kube.store import Runtime
from finalizer.testing.fake_kube.wire import (
    JSON,
    client_may_leave,
    dumps,
    node_unreachable,
    not_found,
    parse_bool,
    status_response,
)

PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
#: Exit code reported to sessions whose container stopped under them (runtime SIGKILL).
KILLED_EXIT_CODE = 137


def exit_status(exit_code: int, argv: list[str]) -> JSON:
    """The channel-3 status object the kubelet writes (``remotecommand`` ``writeStatus``)."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            f"[{' '.join(argv)}], exit code {exit_code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def _pick_container(pod: JSON, requested: str) -> tuple[str | None, web.Response | None]:
    name = pod["metadata"]["name"]
    names = lifecycle.container_names(pod)
    if not requested:
        if len(names) == 1:
            return names[0], None
        message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        return None, status_response(400, message, "BadRequest")
    if requested not in names:
        return None, status_response(400, f"container {requested} is not valid for pod {name}", "BadRequest")
    return requested, None


def precheck(cluster: Cluster, namespace: str, name: str, requested: str) -> tuple[str, web.Response | None]:
    """Resolve the container; an error response when the exec cannot be upgraded."""
    pod = cluster.store.get(namespace, name)
    if pod is None:
        return "", not_found(name)
    container, error = _pick_container(pod, requested)
    if error is not None or container is None:
        return "", error
    if "nodeName" not in pod["spec"]:
        return "", status_response(400, f"pod {name} does not have a host assigned", "BadRequest")
    runtime = cluster.store.runtime_of(namespace, name)
    if runtime.unreachable:
        return "", node_unreachable(str(pod["spec"]["nodeName"]))
    if runtime.forgotten or lifecycle.container_state(pod, container) != "running":
        return "", web.Response(status=500, text=f'container not found ("{container}")\n')
    return container, None


async def handle_exec(
    request: web.Request,
    cluster: Cluster,
    namespace: str,
    name: str,
    stop_container: Callable[[str, str, str], None],
) -> web.StreamResponse:
    query = request.query
    try:
        stdin = bool(parse_bool(query.get("stdin")))
        want_stdout = parse_bool(query.get("stdout"))
        want_stderr = parse_bool(query.get("stderr"))
    except ValueError as exc:
        return status_response(400, str(exc), "BadRequest")
    # PodExecOptions booleans default to false, as on the real API.
    want_stdout, want_stderr = bool(want_stdout), bool(want_stderr)
    argv = query.getall("command", [])
    if not argv:
        return status_response(400, "you must specify at least 1 command", "BadRequest")
    if not (stdin or want_stdout or want_stderr):
        return status_response(400, "you must specify at least one of stdin, stdout, stderr", "BadRequest")
    container, error = precheck(cluster, namespace, name, query.get("container", ""))
    if error is not None:
        return error
    # ``timeout``: how long close() waits for the client's close frame (a stuck client holds nothing).
    ws = web.WebSocketResponse(protocols=(PROTOCOL,), timeout=2.0)
    if not ws.can_prepare(request).ok:
        return status_response(400, "Upgrade request required", "BadRequest")
    await ws.prepare(request)
    mark_opened(request, 101)
    runtime = cluster.store.runtime_of(namespace, name)
    session = _Session(ws, want_stdout, want_stderr, runtime.stop_event(container))

    def ran(text: str) -> None:
        cluster.exec_commands.append(ExecCommand(namespace, name, container, text))

    session.ran = ran
    exit_code: int | None = None
    stops = False
    transport = request.transport
    if transport is not None:
        runtime.exec_transports.add(transport)
    try:
        with client_may_leave():
            await session.open()
            if stdin and argv[0] in shell.SHELLS and len(argv) == 1:
                exit_code, stops = await session.interactive(runtime)
            else:
                exit_code, stops = await session.once(argv, runtime)
    finally:
        if transport is not None:
            runtime.exec_transports.discard(transport)
    if exit_code is not None and not ws.closed:
        with contextlib.suppress(ConnectionError):
            await session.send(ERROR, dumps(exit_status(exit_code, argv)).encode())
    if stops:
        # Before the close: a client that saw the session end sees the container stopped too.
        stop_container(namespace, name, container)
    with contextlib.suppress(ConnectionError):
        await ws.close()
    return ws


class _Session:
    def __init__(self, ws: web.WebSocketResponse, stdout: bool, stderr: bool, stopped: asyncio.Event) -> None:
        self.ws = ws
        self.stdout = stdout
        self.stderr = stderr
        self.stopped = stopped
        #: Told each command the session runs (``Cluster.exec_commands``).
        self.ran: Callable[[str], None] = lambda text: None

    async def send(self, channel: int, data: bytes) -> None:
        await self.ws.send_bytes(bytes([channel]) + data)

    async def open(self) -> None:
        """One empty message on the lowest writable channel tells the client the stream is up.

        (kubelet ``remotecommand/websocket.go`` ``createWebSocketStreams``: stdout, else stderr, else error.)
        """
        await self.send(STDOUT if self.stdout else STDERR if self.stderr else ERROR, b"")

    async def emit(self, result: shell.Result) -> None:
        if result.stdout and self.stdout:
            await self.send(STDOUT, result.stdout)
        if result.stderr and self.stderr:
            await self.send(STDERR, result.stderr)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless the container stops first; True when it stopped."""
        if seconds <= 0:
            return self.stopped.is_set()
        try:
            await asyncio.wait_for(self.stopped.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def once(self, argv: list[str], runtime: Runtime) -> tuple[int | None, bool]:
        """Run a non-interactive command: (exit code, stops container)."""
        self.ran(shlex.join(argv))
        result = shell.run_argv(argv, runtime.files)
        if await self._sleep(result.sleep):
            return KILLED_EXIT_CODE, False
        await self.emit(result)
        return result.exit_code, result.stops_container

    async def interactive(self, runtime: Runtime) -> tuple[int | None, bool]:
        """A shell reading stdin lines until ``exit``, a client close, or the container stopping."""
        buffer = b""
        status = 0  # ``$?``: the last line's exit code, as sh expands it in the next line
        stop_wait = asyncio.ensure_future(self.stopped.wait())
        try:
            while True:
                receive = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait({receive, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if stop_wait in done:
                    receive.cancel()
                    return KILLED_EXIT_CODE, False
                message = receive.result()
                if message.type == WSMsgType.BINARY:
                    data: bytes = message.data
                elif message.type == WSMsgType.TEXT:
                    data = str(message.data).encode()
                else:
                    return None, False  # client closed: no status to write
                if not data or data[0] != STDIN:
                    continue
                buffer += data[1:]
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    text = line.decode(errors="replace")
                    self.ran(text)
                    result = shell.run_script(text.replace("$?", str(status)), runtime.files)
                    status = result.exit_code
                    if await self._sleep(result.sleep):
                        return KILLED_EXIT_CODE, False
                    await self.emit(result)
                    if result.stops_container:
                        # The kill reaches this very shell too; the container stop ends the session.
                        return KILLED_EXIT_CODE, True
                    if line.strip().startswith(b"exit"):
                        return result.exit_code, False
        finally:
            stop_wait.cancel()
