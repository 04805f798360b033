"""A container's log as a stream of bounded batches of lines: ``pods/{name}/log``, read incrementally.

One GET per stream (``follow=true`` while the pod runs, ``follow=false`` once it ended), with
``timestamps=true`` so a reopened stream can skip what was written (``finalizer.decisions.logs``).
The body is read as it arrives and handed up in batches of at most ``batch_bytes``; nothing keeps
more than one batch and one partial line, so a log of any size costs the same memory (upstream
#73044 read it whole). A line longer than ``max_line_bytes`` is cut into pieces of that size.

Log streams take no slot of the cluster's unary semaphore: a follow stream held for the life of a
pod would starve the short calls. They have their own bound (``KubeSettings.max_log_streams``,
counted in the connection pool): beyond it a stream waits for one to end, so a thousand followed
pods cannot take every connection. The read timeout of a follow stream is long (a quiet container
writes nothing for minutes); the caller reopens it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from kubernetes_asyncio.client import CoreV1Api

from finalizer.kube.config import KubeSettings
from finalizer.kube.errors import kube_errors
from finalizer.kube.responses import raise_for_response

#: Bytes of lines handed up at once.
BATCH_BYTES = 32 * 1024
#: Longest line kept whole; longer ones are cut (the kubelet itself splits lines at 16 KiB).
MAX_LINE_BYTES = 64 * 1024


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace").rstrip("\r")


class LogStreams:
    """Log reads against one cluster."""

    def __init__(self, core: CoreV1Api, settings: KubeSettings) -> None:
        self._core = core
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.max_log_streams)

    async def lines(
        self,
        namespace: str,
        name: str,
        container: str,
        *,
        follow: bool,
        since_seconds: int | None = None,
        batch_bytes: int = BATCH_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> AsyncIterator[list[str]]:
        """Batches of the container's log lines (``timestamps=true`` form, newline stripped).

        Errors are ``finalizer.exceptions`` (404 pod gone, 400 container not started …); a stream
        cut half-way raises ``KubeTransientError`` after the lines already handed up.
        """
        what = f"read log of {namespace}/{name}[{container}]"
        read_timeout = self._settings.log_follow_read_timeout if follow else self._settings.read_timeout
        kwargs: dict[str, object] = {}
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        async with self._slots, contextlib.AsyncExitStack() as stack:
            stack.enter_context(kube_errors(what))
            response: aiohttp.ClientResponse = await self._core.read_namespaced_pod_log(
                name,
                namespace,
                container=container,
                follow=follow,
                timestamps=True,
                _preload_content=False,
                _request_timeout=(self._settings.connect_timeout, read_timeout),
                **kwargs,
            )
            stack.callback(response.release)
            await raise_for_response(response, what=what)
            async for batch in _batches(response, batch_bytes, max_line_bytes):
                yield batch


async def _batches(
    response: aiohttp.ClientResponse, batch_bytes: int, max_line_bytes: int
) -> AsyncIterator[list[str]]:
    partial = b""
    batch: list[str] = []
    size = 0
    async for data in response.content.iter_chunked(batch_bytes):
        partial += data
        *complete, partial = partial.split(b"\n")
        pieces = [
            line[i : i + max_line_bytes]
            for line in complete
            for i in range(0, len(line) or 1, max_line_bytes)
        ]
        while len(partial) > max_line_bytes:
            pieces.append(partial[:max_line_bytes])
            partial = partial[max_line_bytes:]
        for raw in pieces:
            batch.append(_decode(raw))
            size += len(raw) + 1
            if size >= batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:  # what arrived is handed up now: a followed log shows as it is written
            yield batch
            batch, size = [], 0
    if partial:
        batch.append(_decode(partial))
    if batch:
        yield batch
