"""Read the XCom out of the ``airflow-xcom-sidecar`` over exec, and stop the sidecar.

The default (preloaded) exec of kubernetes_asyncio turns JSON into a Python repr, merges
stderr, drops the exit code and decodes frame by frame, so we read the v4 channel frames
ourselves: channel-1 bytes joined, then decoded; the exit status from channel 3 (none
means failure); a size cap that stops reading; one overall timeout (exec ignores
``_request_timeout``). The command is the provider's, byte for byte.

Exec has no uid precondition (``PodExecOptions`` has none): it reaches whatever pod holds the name
at that moment. The ``uid`` passed here is used to explain a refused exec (a pod that took the name
is reported as ours being gone); a successful exec is not re-checked. Callers read the XCom only
after seeing *their* uid's base container terminate, while the sidecar keeps that pod (and so the
name) alive, and KPO pod names carry a random suffix, so a same-name replacement in between is not
a case we pay an extra GET per read for.

Refused handshakes carry only a status. 404 is "pod gone"; 400 and 5xx are explained by reading the
pod: gone or another uid → ``PodNotFoundError``; sidecar not running → ``SidecarNotRunningError`` (the
real API's 400s, unknown container or no node, land here); otherwise a 5xx is transient (node
unreachable) and a 400 is ``KubeRequestError`` (the API rejected the request; tested with an injected
400 while the sidecar runs).

A session the transport breaks before its channel-3 status (reset, proxy or node gone) is
``KubeTransientError``: the command's outcome is unknown and the XCom is still in the sidecar.
A session that closes cleanly without a status stays an ``XComExecFailedError`` (facts: no status
means failure). The sidecar stop is exempt: its session dies with the container by design.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client import CoreV1Api

from finalizer.exceptions import (
    FinalizerError,
    KubeError,
    KubeTransientError,
    PodNotFoundError,
    SidecarNotRunningError,
    XComExecFailedError,
    XComInvalidJSONError,
    XComTooLargeError,
)
from finalizer.kube.config import KubeSettings
from finalizer.kube.errors import translate
from finalizer.pod import XCOM_SIDECAR_NAME, PodView

XCOM_PATH = "/airflow/xcom/return.json"
EMPTY_XCOM_RESULT = "__airflow_xcom_result_empty__"
XCOM_COMMAND = [
    "/bin/sh",
    "-c",
    f"if [ -s {XCOM_PATH} ]; then cat {XCOM_PATH}; else echo {EMPTY_XCOM_RESULT}; fi",
]
#: The provider's sidecar stop: SIGINT to the sidecar's ``sh`` (its ``trap`` loop), then a fallback.
KILL_COMMAND = "kill -2 $(pgrep -u $(id -u) -f 'sh')"
FALLBACK_KILL_COMMAND = (
    "for f in /proc/[0-9]*/comm; do "
    '[ -O $f ] && read c < $f && [ "$c" = "sh" ] && pid=${f%/comm} && kill -2 ${pid##*/}; '
    "done"
)
#: What ``connect_get_namespaced_pod_exec(..., _preload_content=False)`` gives: entering it connects.
WsContext = AbstractAsyncContextManager[aiohttp.ClientWebSocketResponse]
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
#: Not a channel: what ``next_frame`` reports when the transport broke.
BROKEN = -1
MAX_STDERR = 4096


@dataclass(frozen=True, slots=True)
class XComResult:
    """What ``return.json`` held. ``empty`` (no file / empty file) differs from a JSON ``null``."""

    empty: bool
    value: Any = None
    size: int = 0


@dataclass(slots=True)
class ExecOutput:
    stdout: bytes
    stderr: bytes
    status: bytes | None


def exit_code_of(status: bytes | None) -> int | None:
    """0 for ``Success``; the exit code of a ``NonZeroExitCode`` failure; None if unknown/missing."""
    if not status:
        return None
    try:
        parsed = json.loads(status)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    if parsed.get("status") == "Success":
        return 0
    try:
        return int(parsed["details"]["causes"][0]["message"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def parse_xcom(output: ExecOutput, where: str) -> XComResult:
    """Turn a finished exec into a result (pure: table-tested)."""
    code = exit_code_of(output.status)
    if code != 0:
        detail = output.status.decode("utf-8", "replace") if output.status else "no exit status"
        stderr = output.stderr.decode("utf-8", "replace").strip()
        raise XComExecFailedError(
            f"XCom read in {where} failed (exit code {code}): {detail}"
            + (f"; stderr: {stderr}" if stderr else "")
        )
    return decode_xcom(output.stdout, where)


def decode_xcom(stdout: bytes, where: str) -> XComResult:
    """What a successful read printed: the empty sentinel, or ``return.json`` parsed as JSON."""
    try:
        text = stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XComInvalidJSONError(f"XCom in {where} is not UTF-8: {exc}") from exc
    if text.rstrip() == EMPTY_XCOM_RESULT:
        return XComResult(empty=True)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise XComInvalidJSONError(f"XCom in {where} is not valid JSON: {exc}") from exc
    return XComResult(empty=False, value=value, size=len(stdout))


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, bytes] | None:
    """The session's next ``(channel, payload)``; ``(BROKEN, b"")`` on a transport error; None once closed.

    Text and binary frames both count (servers send either); the 1-byte frames that open a
    channel are skipped.
    """
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.BINARY:
            frame: bytes = msg.data
        elif msg.type == aiohttp.WSMsgType.TEXT:
            frame = str(msg.data).encode()
        elif msg.type == aiohttp.WSMsgType.ERROR:
            return BROKEN, b""
        else:
            return None
        if len(frame) >= 2:
            return frame[0], frame[1:]


def ended_abnormally(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Whether the session ended by a transport failure (reset, protocol error), not a close."""
    return ws.exception() is not None or ws.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE


class ExecOps:
    """Exec sessions into one cluster's pods (one shared ``WsApiClient``)."""

    def __init__(
        self,
        ws_core: Callable[[], CoreV1Api],
        settings: KubeSettings,
        limiter: asyncio.Semaphore,
        read_pod: Callable[[str, str], Awaitable[PodView]],
    ) -> None:
        self._ws_core = ws_core
        #: Shared with ``finalizer.kube.sidecar.SidecarSession``: one budget for every exec.
        self.settings = settings
        self.limiter = limiter
        self._read_pod = read_pod

    async def connect(self, namespace: str, name: str, command: list[str], *, stdin: bool) -> WsContext:
        """The WebSocket context of one exec session into the sidecar (entering it connects)."""
        ctx: WsContext = await self._ws_core().connect_get_namespaced_pod_exec(
            name,
            namespace,
            container=XCOM_SIDECAR_NAME,
            command=command,
            stdin=stdin,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        return ctx

    async def explain_refusal(
        self, exc: BaseException, namespace: str, name: str, uid: str | None
    ) -> FinalizerError:
        """Why exec was refused: the pod is gone, the sidecar is not running, or a transient fault.

        A refused handshake only carries a status (no body): 500 means either "container not
        found" or "node unreachable", so we look at the pod to tell which.
        """
        where = f"pod {namespace}/{name}"
        status = getattr(exc, "status", None)
        if status == 404:
            return PodNotFoundError(f"{where} is gone: the XCom sidecar cannot be reached", status=404)
        if status is not None and (status == 400 or status >= 500):
            try:
                pod = await self._read_pod(namespace, name)
            except PodNotFoundError:
                return PodNotFoundError(f"{where} is gone: the XCom sidecar cannot be reached", status=404)
            except KubeError:
                pod = None
            if pod is not None and uid is not None and pod.uid != uid:
                return PodNotFoundError(f"{where} uid {uid} is gone (the name now has uid {pod.uid})")
            if pod is not None and not pod.has_running_sidecar():
                return SidecarNotRunningError(
                    f"{where}: {XCOM_SIDECAR_NAME} is not running (exec HTTP {status})"
                )
        translated = translate(exc, what=f"exec into {where}")
        return translated if isinstance(translated, KubeError) else KubeTransientError(str(exc))

    async def _exec(
        self,
        namespace: str,
        name: str,
        uid: str | None,
        command: list[str],
        *,
        stdin_lines: Sequence[str] = (),
        max_stdout: int | None = None,
        stop_on_stderr: bool = False,
        limit_seconds: float | None = None,
        require_status: bool = True,
    ) -> ExecOutput:
        """One exec session into the sidecar; its stdout, stderr and channel-3 status.

        With ``require_status``, a session the transport broke before any status arrived is
        ``KubeTransientError`` (the command's outcome is unknown, so retry). Without it (the
        sidecar stop, whose session dies with the container), such an end is returned as is.
        """
        where = f"pod {namespace}/{name}"
        stdout: list[bytes] = []
        stderr = bytearray()
        status = bytearray()
        size = 0
        got_status = False
        refused: aiohttp.WSServerHandshakeError | None = None
        async with self.limiter:
            try:
                async with asyncio.timeout(limit_seconds or self.settings.exec_timeout):
                    ctx = await self.connect(namespace, name, command, stdin=bool(stdin_lines))
                    async with ctx as ws:
                        for line in stdin_lines:
                            await ws.send_bytes(bytes([STDIN]) + line.encode())
                        broken = False
                        while (frame := await next_frame(ws)) is not None:
                            channel, payload = frame
                            if channel == BROKEN:
                                broken = True
                                break
                            if channel == STDOUT:
                                size += len(payload)
                                if max_stdout is not None and size > max_stdout:
                                    raise XComTooLargeError(
                                        f"XCom in {where} is larger than the limit of {max_stdout} bytes"
                                    )
                                stdout.append(payload)
                            elif channel == STDERR:
                                stderr += payload[: max(0, MAX_STDERR - len(stderr))]
                                if stop_on_stderr:
                                    break
                            elif channel == STATUS:
                                got_status = True
                                status += payload
                        if require_status and not got_status and (broken or ended_abnormally(ws)):
                            # A reset mid-session is the transport's fault, not the command's: the
                            # XCom is still in the sidecar, so this must be retried, not failed.
                            raise KubeTransientError(
                                f"exec into {where}: the connection broke before the exit status "
                                f"({ws.exception() or f'close code {ws.close_code}'})"
                            )
            except FinalizerError:
                raise
            except aiohttp.WSServerHandshakeError as exc:
                refused = exc  # explained below, outside the limiter: the explanation reads the pod
            except TimeoutError as exc:
                raise KubeTransientError(f"exec into {where} timed out", status=None) from exc
            except Exception as exc:
                translated = translate(exc, what=f"exec into {where}")
                if translated is None:
                    raise
                raise translated from exc
        if refused is not None:
            raise await self.explain_refusal(refused, namespace, name, uid) from refused
        return ExecOutput(b"".join(stdout), bytes(stderr), bytes(status) if got_status else None)

    async def read_xcom(
        self, namespace: str, name: str, uid: str | None = None, *, max_bytes: int
    ) -> XComResult:
        """Read ``return.json`` from the running sidecar.

        Raises ``XComTooLargeError``, ``XComInvalidJSONError``, ``XComExecFailedError``,
        ``SidecarNotRunningError``, ``PodNotFoundError`` (terminal) or ``KubeTransientError``.
        """
        # The sentinel line must fit even under a tiny cap.
        cap = max(max_bytes, len(EMPTY_XCOM_RESULT) + 2)
        output = await self._exec(namespace, name, uid, XCOM_COMMAND, max_stdout=cap)
        return parse_xcom(output, f"pod {namespace}/{name}")

    async def stop_sidecar(self, namespace: str, name: str, uid: str | None = None) -> None:
        """SIGINT the sidecar's ``sh`` as the provider does, so the pod can reach a terminal phase.

        A pod or sidecar that is already gone counts as stopped. Failure raises a finalizer
        error that callers only log: a sidecar left running merely delays the pod's end.
        """
        where = f"pod {namespace}/{name}"
        try:
            for command in (KILL_COMMAND, FALLBACK_KILL_COMMAND):
                # The session ends when the sidecar stops; stderr means this command failed.
                output = await self._exec(
                    namespace,
                    name,
                    uid,
                    ["/bin/sh"],
                    stdin_lines=[command + "\n"],
                    stop_on_stderr=True,
                    limit_seconds=self.settings.sidecar_stop_timeout,
                    require_status=False,
                )
                if not output.stderr:
                    return
        except (PodNotFoundError, SidecarNotRunningError):
            return
        stderr = output.stderr.decode("utf-8", "replace").strip()
        raise XComExecFailedError(f"could not stop {XCOM_SIDECAR_NAME} in {where}: {stderr}")
