"""``GET …/pods?watch=true`` (and events, Jobs): chunked JSON lines, rv replay, bookmarks, 410, timeouts.

A client that hangs up mid-stream simply ends it (``client_may_leave``), without a server-side traceback.
Replay and subscription happen in one synchronous step on the loop, so no change can fall between
them. A BOOKMARK is sent only when the watcher's queue is empty, so its resourceVersion never runs
ahead of an event the client has not received yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Protocol

from aiohttp import web

from finalizer.testing.fake_kube.faults import mark_opened
from finalizer.testing.fake_kube.selectors import Selector
from finalizer.testing.fake_kube.store import Change, Watcher
from finalizer.testing.fake_kube.wire import JSON, client_may_leave, dumps, status_body


class WatchSource(Protocol):
    """What a watch needs from a store (pods, events)."""

    kind: str
    rv: int
    compacted_rv: int

    def list(self, namespace: str | None, labels: Selector, fields: Selector) -> list[JSON]: ...
    def since(self, rv: int) -> Iterable[Change]: ...
    def subscribe(self, watcher: Watcher) -> None: ...
    def unsubscribe(self, watcher: Watcher) -> None: ...


def _bookmark(kind: str, api_version: str, rv: int) -> bytes:
    obj = {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(rv)}}
    return (dumps({"type": "BOOKMARK", "object": obj}) + "\n").encode()


def _expired(requested: int, oldest: int) -> bytes:
    status = status_body(410, f"too old resource version: {requested} ({oldest})", "Expired")
    return (dumps({"type": "ERROR", "object": status}) + "\n").encode()


async def serve_watch(
    request: web.Request,
    store: WatchSource,
    bookmark_interval: float,
    namespace: str | None,
    labels: Selector,
    fields: Selector,
    resource_version: str,
    timeout_seconds: float | None,
    bookmarks: bool,
    api_version: str = "v1",
) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    mark_opened(request, 200)

    with client_may_leave():
        watcher = Watcher(namespace, labels, fields)
        if resource_version not in ("", "0"):
            try:
                since = int(resource_version)
            except ValueError:
                since = -1
            if since < store.compacted_rv:
                await response.write(_expired(since, store.compacted_rv + 1))
                await response.write_eof()
                return response
            initial = [change.line(t) for change in store.since(since) if (t := watcher.translate(change))]
        else:
            initial = [
                (
                    dumps({"type": "ADDED", "object": {"kind": store.kind, "apiVersion": api_version, **obj}})
                    + "\n"
                ).encode()
                for obj in store.list(namespace, labels, fields)
            ]
        store.subscribe(watcher)
        try:
            if initial:
                await response.write(b"".join(initial))
            await _stream(
                response, store, watcher, timeout_seconds, bookmarks, bookmark_interval, api_version
            )
        finally:
            store.unsubscribe(watcher)
        await response.write_eof()
    return response


async def _stream(
    response: web.StreamResponse,
    store: WatchSource,
    watcher: Watcher,
    timeout_seconds: float | None,
    bookmarks: bool,
    bookmark_interval: float,
    api_version: str,
) -> None:
    """Forward queued lines until the deadline or ``None`` (server closing); BOOKMARKs when idle.

    Whatever is queued goes out in one write (one syscall for a burst, same bytes on the wire). The
    queue is drained before any wait, so a due BOOKMARK never starves events: ``wait_for(get, 0)``
    cancels the get before it runs, and looping on it with a non-empty queue was a livelock.
    """
    queue = watcher.queue
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    next_bookmark = time.monotonic() + bookmark_interval
    while True:
        lines: list[bytes] = []
        if queue.empty():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                await response.write(_bookmark(store.kind, api_version, store.rv))
                next_bookmark = time.monotonic() + bookmark_interval
                await asyncio.sleep(0)  # a zero interval must not starve the loop
                continue
            waits = [w for w in (deadline, next_bookmark if bookmarks else None) if w is not None]
            try:
                async with asyncio.timeout_at(_loop_time(min(waits)) if waits else None):
                    first = await queue.get()
            except TimeoutError:
                continue
            if first is None:
                return
            lines.append(first)
        ended = False
        while not queue.empty():
            item = queue.get_nowait()
            if item is None:
                ended = True
                break
            lines.append(item)
        if lines:
            await response.write(b"".join(lines))
        if ended:
            return


def _loop_time(monotonic_at: float) -> float:
    """A ``time.monotonic`` instant on the running loop's clock (``timeout_at`` wants loop time)."""
    return asyncio.get_running_loop().time() + (monotonic_at - time.monotonic())
