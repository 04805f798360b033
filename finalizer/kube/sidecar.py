"""One exec session into the XCom sidecar for both of its uses: the read, and later the stop.

Every exec is a new TCP connection, an HTTP upgrade and a WebSocket close, for us, the API server
and the kubelet; the provider pays that twice per pod (read, then stop), and so did we: the two
sessions were a large share of our CPU per finalized pod (README, "Measured"). A job now opens one
``/bin/sh`` in the sidecar, sends the provider's read script (byte for byte) and then
``echo <marker> $?`` on stdin, and keeps the session while the payload is persisted, pushed and the
log tail read. The stop is then a line on the same stdin: the provider's ``kill``, then its
fallback, as in ``ExecOps.stop_sidecar``.

- The read's output ends at the line ``<marker> $?``: the marker is random per read, so no
  ``return.json`` can fake it, and ``$?`` is the read script's exit status, printed in order with
  its stdout (stderr is another stream and may arrive later). A non-zero status, any stderr
  that did arrive, or the shell ending before the marker line fail the read.
- The session holds no slot of the cluster's limiter while it waits between read and stop.
- A session that broke in between, or a job resumed after a crash (no session), stops the sidecar
  with a fresh exec (``ExecOps.stop_sidecar``): the saving is lost, nothing else.
- Any failure during the read closes the session, so a retried read starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from types import TracebackType

import aiohttp

from finalizer.exceptions import (
    FinalizerError,
    KubeTransientError,
    PodNotFoundError,
    SidecarNotRunningError,
    XComExecFailedError,
    XComTooLargeError,
)
from finalizer.kube.errors import translate
from finalizer.kube.xcom import (
    BROKEN,
    EMPTY_XCOM_RESULT,
    FALLBACK_KILL_COMMAND,
    KILL_COMMAND,
    MAX_STDERR,
    STATUS,
    STDERR,
    STDIN,
    STDOUT,
    XCOM_COMMAND,
    ExecOps,
    WsContext,
    XComResult,
    decode_xcom,
    ended_abnormally,
    exit_code_of,
    next_frame,
)
from finalizer.pod import XCOM_SIDECAR_NAME

SHELL = ["/bin/sh"]
#: Room after the marker on its line: `` <exit status>\n`` (at most 3 digits).
MARKER_TAIL = 5


def _marker_status(stdout: bytearray, marker: bytes) -> tuple[int, int] | None:
    """``(exit status, where the marker starts)`` once stdout ends with ``<marker> <status>\n``.

    Only the very end counts: a ``return.json`` cannot hold the marker, which is random per read,
    and the marker line is the last thing the shell prints.
    """
    if not stdout.endswith(b"\n"):
        return None
    at = stdout.rfind(marker, max(0, len(stdout) - len(marker) - MARKER_TAIL))
    if at < 0:
        return None
    tail = bytes(stdout[at + len(marker) : -1]).strip()
    return (int(tail), at) if tail.isdigit() else None


#: How long closing an unused session may wait for the server's close frame.
CLOSE_TIMEOUT = 1.0


class SidecarSession:
    """An interactive shell in one pod's sidecar, opened by the first read (an async context manager)."""

    def __init__(self, ops: ExecOps, namespace: str, name: str, uid: str | None) -> None:
        self._ops = ops
        self._namespace = namespace
        self._name = name
        self._uid = uid
        self._where = f"pod {namespace}/{name}"
        self._ctx: WsContext | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> SidecarSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session (the shell then reads EOF and exits); bounded, never raises."""
        ctx, self._ctx, self._ws = self._ctx, None, None
        if ctx is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ctx.__aexit__(None, None, None)

    # --- the read -------------------------------------------------------------------------------
    async def read_xcom(self, max_bytes: int) -> XComResult:
        """Read ``return.json`` (same errors as ``ExecOps.read_xcom``); the session stays open."""
        await self.aclose()  # a retried read starts from a fresh session
        marker = f"__kpo_finalizer_end_{secrets.token_hex(8)}__"
        cap = max(max_bytes, len(EMPTY_XCOM_RESULT) + 2)
        refused: aiohttp.WSServerHandshakeError | None = None
        try:
            async with self._ops.limiter, asyncio.timeout(self._ops.settings.exec_timeout):
                try:
                    ws = await self._connect()
                except aiohttp.WSServerHandshakeError as exc:
                    refused = exc  # explained below, outside the limiter: that reads the pod
                else:
                    # ``$?`` on the marker line: the read script's exit status, in order with its output.
                    script = f"{XCOM_COMMAND[2]}\necho {marker} $?\n"
                    await ws.send_bytes(bytes([STDIN]) + script.encode())
                    stdout = await self._until_marker(ws, marker.encode(), cap, max_bytes)
        except TimeoutError as exc:
            await self.aclose()
            raise KubeTransientError(f"exec into {self._where} timed out") from exc
        except BaseException:
            await self.aclose()
            raise
        if refused is not None:
            explained = await self._ops.explain_refusal(refused, self._namespace, self._name, self._uid)
            raise explained from refused
        return decode_xcom(stdout, self._where)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        """Open the shell; transport errors as ``finalizer.exceptions`` (refusals pass through)."""
        try:
            ctx = await self._ops.connect(self._namespace, self._name, SHELL, stdin=True)
            ws = await ctx.__aenter__()
        except (aiohttp.WSServerHandshakeError, TimeoutError):
            raise
        except Exception as exc:
            translated = translate(exc, what=f"exec into {self._where}")
            if translated is None:
                raise
            raise translated from exc
        self._ctx, self._ws = ctx, ws
        return ws

    async def _until_marker(
        self, ws: aiohttp.ClientWebSocketResponse, marker: bytes, cap: int, max_bytes: int
    ) -> bytes:
        """Stdout up to the ``<marker> <status>`` line; a non-zero status, stderr or an early end
        is the read's failure."""
        stdout = bytearray()
        stderr = bytearray()
        while (status := _marker_status(stdout, marker)) is None:
            frame = await next_frame(ws)
            if frame is None or frame[0] in (BROKEN, STATUS):
                raise self._ended_early(ws, frame, stderr)
            channel, payload = frame
            if channel == STDOUT:
                stdout += payload
                if len(stdout) > cap + len(marker) + MARKER_TAIL:
                    raise XComTooLargeError(
                        f"XCom in {self._where} is larger than the limit of {max_bytes} bytes"
                    )
            elif channel == STDERR:
                stderr += payload[: max(0, MAX_STDERR - len(stderr))]
        code, at = status
        if code != 0 or stderr:
            text = stderr.decode("utf-8", "replace").strip()
            raise XComExecFailedError(
                f"XCom read in {self._where} failed (exit code {code})"
                + (f"; stderr: {text}" if text else "")
            )
        return bytes(stdout[:at])

    def _ended_early(
        self, ws: aiohttp.ClientWebSocketResponse, frame: tuple[int, bytes] | None, stderr: bytearray
    ) -> FinalizerError:
        """The shell or the connection ended before the marker: why, as our error."""
        text = stderr.decode("utf-8", "replace").strip()
        if frame is not None and frame[0] == STATUS:
            return XComExecFailedError(
                f"XCom read in {self._where} failed (exit code {exit_code_of(frame[1])}): "
                f"{frame[1].decode('utf-8', 'replace')}" + (f"; stderr: {text}" if text else "")
            )
        if frame is None and not ended_abnormally(ws):
            return XComExecFailedError(f"XCom read in {self._where} failed: the session closed early")
        # A reset mid-session is the transport's fault: the XCom is still in the sidecar.
        return KubeTransientError(
            f"exec into {self._where}: the connection broke before the XCom "
            f"({ws.exception() or f'close code {ws.close_code}'})"
        )

    # --- the stop -------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop the sidecar over this session if it is still open, else with a fresh exec."""
        ws = self._ws
        if ws is None or ws.closed:
            await self.aclose()
            await self._ops.stop_sidecar(self._namespace, self._name, self._uid)
            return
        try:
            stderr = await self._stop_over(ws)
        except (PodNotFoundError, SidecarNotRunningError):
            return
        except (FinalizerError, OSError, aiohttp.ClientError, TimeoutError):
            # The session broke under us: whether the kill went out is unknown; a fresh exec
            # decides (a sidecar already stopped counts as stopped there).
            await self.aclose()
            await self._ops.stop_sidecar(self._namespace, self._name, self._uid)
            return
        finally:
            await self.aclose()
        if stderr:
            text = stderr.decode("utf-8", "replace").strip()
            raise XComExecFailedError(f"could not stop {XCOM_SIDECAR_NAME} in {self._where}: {text}")

    async def _stop_over(self, ws: aiohttp.ClientWebSocketResponse) -> bytes:
        """Send the kill, then its fallback if the kill complained; the last stderr (empty: stopped)."""
        stderr = b""
        async with self._ops.limiter, asyncio.timeout(self._ops.settings.sidecar_stop_timeout):
            for command in (KILL_COMMAND, FALLBACK_KILL_COMMAND):
                await ws.send_bytes(bytes([STDIN]) + (command + "\n").encode())
                stderr = b""
                # The session ends when the sidecar stops; stderr means this command failed.
                while (frame := await next_frame(ws)) is not None:
                    channel, payload = frame
                    if channel == STATUS:
                        break  # the shell was killed with the sidecar: its status, then the close
                    if channel == BROKEN:
                        raise KubeTransientError(f"exec into {self._where}: the connection broke")
                    if channel == STDERR:
                        stderr = payload[:MAX_STDERR]
                        break
                if frame is None and ended_abnormally(ws):
                    # Reset, not ended: did the kill go out? A fresh exec will tell.
                    raise KubeTransientError(f"exec into {self._where}: the connection broke")
                if not stderr:
                    return b""
        return stderr
