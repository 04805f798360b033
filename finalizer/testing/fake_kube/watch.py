"""``GET …/pods?watch=true`` (and events): chunked JSON lines, rv replay, bookmarks, 410, timeouts.

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


def _bookmark(kind: str, rv: int) -> bytes:
    obj = {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}
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
                    dumps({"type": "ADDED", "object": {"kind": store.kind, "apiVersion": "v1", **obj}}) + "\n"
                ).encode()
                for obj in store.list(namespace, labels, fields)
            ]
        store.subscribe(watcher)
        try:
            for line in initial:
                await response.write(line)
            deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
            next_bookmark = time.monotonic() + bookmark_interval
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                waits = [deadline - now if deadline is not None else None]
                if bookmarks:
                    waits.append(max(next_bookmark - now, 0.0))
                timeout = min((w for w in waits if w is not None), default=None)
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), timeout)
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark and watcher.queue.empty():
                        await response.write(_bookmark(store.kind, store.rv))
                        next_bookmark = time.monotonic() + bookmark_interval
                    continue
                if item is None:
                    break
                await response.write(item)
        finally:
            store.unsubscribe(watcher)
        await response.write_eof()
    return response
