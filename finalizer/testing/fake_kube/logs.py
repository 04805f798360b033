"""``pods/{name}/log`` with ``container``, ``tailLines``, ``sinceSeconds``, ``timestamps``, ``limitBytes``
and ``follow``.

Errors mirror the API: 404 Status for a missing pod; 400 Status when the container must be named,
is unknown, or is still waiting to start. ``follow=true`` streams the lines so far, then whatever is
added until the container stops (or the pod goes), then ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from aiohttp import web

from finalizer.testing.fake_kube import lifecycle
from finalizer.testing.fake_kube.cluster import Cluster
from finalizer.testing.fake_kube.wire import (
    client_may_leave,
    node_unreachable,
    not_found,
    now,
    parse_bool,
    status_response,
    timestamp_nano,
)

LogLine = tuple[datetime, str]


def _bad_request(message: str) -> web.Response:
    return status_response(400, message, "BadRequest")


def render(lines: list[LogLine], stamps: bool) -> bytes:
    return "".join((f"{timestamp_nano(ts)} " if stamps else "") + line + "\n" for ts, line in lines).encode()


async def handle_log(request: web.Request, cluster: Cluster, namespace: str, name: str) -> web.StreamResponse:
    query = request.query
    pod = cluster.store.get(namespace, name)
    if pod is None:
        return not_found(name)
    names = lifecycle.container_names(pod)
    container = query.get("container", "")
    if not container:
        if len(names) != 1:
            return _bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            )
        container = names[0]
    if container not in names:
        return _bad_request(f"container {container} is not valid for pod {name}")
    state = lifecycle.container_state(pod, container)
    if state in (None, "waiting"):
        waiting = ((lifecycle.container_status(pod, container) or {}).get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "ContainerCreating")
        return _bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    try:
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        since = int(query["sinceSeconds"]) if query.get("sinceSeconds") else None
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        stamps = bool(parse_bool(query.get("timestamps")))
        follow = bool(parse_bool(query.get("follow")))
    except ValueError as exc:
        return _bad_request(str(exc))
    runtime = cluster.store.runtime_of(namespace, name)
    if runtime.unreachable:
        return node_unreachable(str(pod["spec"].get("nodeName", "")))
    lines = list(runtime.logs.get(container, []))
    if since is not None:
        cutoff = now() - timedelta(seconds=since)
        lines = [(ts, line) for ts, line in lines if ts >= cutoff]
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    data = render(lines, stamps)
    if limit is not None:
        data = data[:limit]
    if not follow or state == "terminated":
        return web.Response(body=data, content_type="text/plain", charset="utf-8")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    uid = pod["metadata"]["uid"]

    def gone() -> bool:  # force-deleted (no container stop): the kubelet ends the stream too
        current = cluster.store.get(namespace, name)
        return current is None or current["metadata"]["uid"] != uid

    with client_may_leave():
        await response.write(data)
        sent = len(runtime.logs.get(container, []))
        stopped = runtime.stop_event(container)
        while not stopped.is_set() and not gone():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), 0.05)
            current = runtime.logs.get(container, [])
            if len(current) > sent:
                await response.write(render(current[sent:], stamps))
                sent = len(current)
        await response.write_eof()
    return response
