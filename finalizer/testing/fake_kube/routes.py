"""HTTP handlers for ``/api/v1/…/pods``: LIST/WATCH, GET, CREATE, PATCH, DELETE, log, exec.

Clients key on the API's exact answers (Status bodies, 409 on a stale resourceVersion, 422 on a uid,
400 for a body that is not an object), so each handler answers as kube-apiserver does; the pod
state itself lives in ``cluster``/``store`` and the streaming answers in ``watch``/``exec``/``logs``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from finalizer.testing.fake_kube import lifecycle
from finalizer.testing.fake_kube.cluster import Cluster
from finalizer.testing.fake_kube.events import EVENT_FIELDS
from finalizer.testing.fake_kube.eviction import handle_eviction
from finalizer.testing.fake_kube.exec import handle_exec
from finalizer.testing.fake_kube.logs import handle_log
from finalizer.testing.fake_kube.paging import ContinueError, decode_token, page
from finalizer.testing.fake_kube.selectors import (
    POD_FIELDS,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from finalizer.testing.fake_kube.watch import serve_watch
from finalizer.testing.fake_kube.wire import (
    JSON,
    json_response,
    not_found,
    parse_bool,
    status_response,
)

CLUSTER_KEY = web.AppKey("cluster", Cluster)
STOP_KEY: web.AppKey[Callable[[str, str, str], None]] = web.AppKey("stop_container")
CREATED_KEY: web.AppKey[Callable[[str, str], None]] = web.AppKey("on_api_create")


def _cluster(request: web.Request) -> Cluster:
    return request.app[CLUSTER_KEY]


def _bad_request(message: str) -> web.Response:
    return status_response(400, message, "BadRequest")


async def list_or_watch(request: web.Request) -> web.StreamResponse:
    cluster = _cluster(request)
    return await list_or_watch_store(request, cluster.store, "PodList", POD_FIELDS, cluster.bookmark_interval)


async def list_or_watch_events(request: web.Request) -> web.StreamResponse:
    cluster = _cluster(request)
    return await list_or_watch_store(
        request, cluster.events, "EventList", EVENT_FIELDS, cluster.bookmark_interval
    )


async def list_or_watch_store(
    request: web.Request,
    store: Any,
    list_kind: str,
    field_names: tuple[str, ...],
    bookmark_interval: float,
    api_version: str = "v1",
) -> web.StreamResponse:
    """LIST (selectors, paging) or WATCH (rv replay, bookmarks, 410) of any store, as the API serves them."""
    namespace = request.match_info.get("namespace")
    query = request.query
    try:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), field_names)
        watch = parse_bool(query.get("watch"))
        bookmarks = parse_bool(query.get("allowWatchBookmarks"))
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
    except (SelectorError, ValueError) as exc:
        return _bad_request(str(exc))
    if watch:
        return await serve_watch(
            request,
            store,
            bookmark_interval,
            namespace,
            labels,
            fields,
            query.get("resourceVersion", ""),
            timeout,
            bool(bookmarks),
            api_version,
        )
    try:
        limit = int(query["limit"]) if query.get("limit") else None
        token = query.get("continue")
        rv, after = decode_token(token, store.compacted_rv) if token else (store.rv, None)
    except ContinueError as exc:
        return status_response(exc.code, str(exc))
    except ValueError as exc:
        return _bad_request(str(exc))
    items, meta = page(store.list(namespace, labels, fields), rv, limit, after)
    return json_response({"kind": list_kind, "apiVersion": api_version, "metadata": meta, "items": items})


async def get_pod(request: web.Request) -> web.Response:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    pod = _cluster(request).store.get(namespace, name)
    if pod is None:
        return not_found(name)
    return _pod_response(_cluster(request), pod)


def _pod_response(cluster: Cluster, pod: JSON, status: int = 200) -> web.Response:
    """A pod answer; the JSON of a stored snapshot is the one its watch event already encoded."""
    return web.Response(text=cluster.store.encode(pod), status=status, content_type="application/json")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    return json.loads(raw)


async def _json_object_body(
    request: web.Request, undecodable: str, not_an_object: str
) -> JSON | web.Response:
    """The body as a JSON object, or the API's 400 (``undecodable: <error>`` / ``not_an_object``)."""
    try:
        body = await _json_body(request)
    except ValueError as exc:
        return _bad_request(f"{undecodable}: {exc}")
    if not isinstance(body, dict):
        return _bad_request(not_an_object)
    return body


async def create_pod(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    namespace = request.match_info["namespace"]
    body = await _json_object_body(
        request, "error decoding request body", "the body of the request was in an unknown format"
    )
    if isinstance(body, web.Response):
        return body
    meta = body.setdefault("metadata", {}) or {}
    body["metadata"] = meta
    if meta.get("namespace") not in (None, "", namespace):
        return _bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    name = meta.get("name")
    if not name and meta.get("generateName"):
        name = meta["generateName"] + lifecycle.random_suffix()
        meta["name"] = name
    if not name:
        return status_response(
            422,
            'Pod "" is invalid: metadata.name: Required value: name or generateName is required',
            "Invalid",
        )
    if not (body.get("spec") or {}).get("containers"):
        return status_response(422, f'Pod "{name}" is invalid: spec.containers: Required value', "Invalid")
    if cluster.store.get(namespace, name) is not None:
        return status_response(
            409, f'pods "{name}" already exists', "AlreadyExists", {"name": name, "kind": "pods"}
        )
    pod = cluster.create(namespace, body)
    request.app[CREATED_KEY](namespace, name)
    return _pod_response(cluster, pod, status=201)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also right for strategic-merge patches of maps such as labels)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_IMMUTABLE = ("uid", "name", "namespace", "creationTimestamp", "resourceVersion")


async def patch_pod(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        return status_response(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            "application/merge-patch+json, application/strategic-merge-patch+json",
            "UnsupportedMediaType",
        )
    if cluster.store.get(namespace, name) is None:
        return not_found(name)
    patch = await _json_object_body(request, "error decoding patch", "patch must be a JSON object")
    if isinstance(patch, web.Response):
        return patch
    wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
    wanted_uid = (patch.get("metadata") or {}).get("uid")
    current = cluster.store.get(namespace, name) or {}
    if wanted_uid is not None and wanted_uid != current["metadata"]["uid"]:
        # The uid is immutable: a patch naming another uid (the name now holds another pod) is
        # refused as the real API refuses it, 422 Invalid, and nothing is written.
        invalid = f'Invalid value: "{wanted_uid}": field is immutable'
        return status_response(
            422,
            f'Pod "{name}" is invalid: metadata.uid: {invalid}',
            "Invalid",
            {
                "name": name,
                "kind": "Pod",
                "causes": [{"reason": "FieldValueInvalid", "message": invalid, "field": "metadata.uid"}],
            },
        )
    if wanted_rv is not None and wanted_rv != current["metadata"]["resourceVersion"]:
        return status_response(
            409,
            f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            "Conflict",
            {"name": name, "kind": "pods"},
        )

    def apply(pod: JSON) -> None:
        merged = merge_patch(pod, patch)
        for key in _IMMUTABLE:
            merged["metadata"][key] = pod["metadata"].get(key)
        merged["metadata"] = {k: v for k, v in merged["metadata"].items() if v is not None}
        merged.pop("kind", None)  # stored objects carry no kind/apiVersion (LIST items must not)
        merged.pop("apiVersion", None)
        pod.clear()
        pod.update(merged)

    updated = cluster.store.update(namespace, name, apply)
    return _pod_response(cluster, updated)


async def delete_pod(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    try:
        body = await _json_body(request) or {}
        grace_text = request.query.get("gracePeriodSeconds")
        grace = body.get("gracePeriodSeconds")
        if grace_text:
            grace = int(grace_text)
    except ValueError as exc:
        return _bad_request(str(exc))
    pod = cluster.store.get(namespace, name)
    if pod is None:
        return not_found(name)
    uid = ((body.get("preconditions") or {}) if isinstance(body, dict) else {}).get("uid")
    if uid is not None and uid != pod["metadata"]["uid"]:
        message = (
            f'Operation cannot be fulfilled on Pod "{name}": Precondition failed: UID in precondition: '
            f"{uid}, UID in object meta: {pod['metadata']['uid']}"
        )
        return status_response(409, message, "Conflict", {"name": name, "kind": "Pod"})
    deleted = cluster.api_delete(namespace, name, None if grace is None else int(grace))
    return _pod_response(cluster, deleted)


async def read_log(request: web.Request) -> web.StreamResponse:
    return await handle_log(
        request, _cluster(request), request.match_info["namespace"], request.match_info["name"]
    )


async def evict_pod(request: web.Request) -> web.Response:
    return await handle_eviction(
        request, _cluster(request), request.match_info["namespace"], request.match_info["name"]
    )


async def exec_pod(request: web.Request) -> web.StreamResponse:
    return await handle_exec(
        request,
        _cluster(request),
        request.match_info["namespace"],
        request.match_info["name"],
        request.app[STOP_KEY],
    )


async def version(request: web.Request) -> web.Response:
    return json_response(
        {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}
    )


def add_routes(app: web.Application) -> None:
    pods = "/api/v1/namespaces/{namespace}/pods"
    app.router.add_get("/version", version)
    app.router.add_get("/api/v1/pods", list_or_watch)
    app.router.add_get("/api/v1/events", list_or_watch_events)
    app.router.add_get("/api/v1/namespaces/{namespace}/events", list_or_watch_events)
    app.router.add_get(pods, list_or_watch)
    app.router.add_post(pods, create_pod)
    app.router.add_get(pods + "/{name}", get_pod)
    app.router.add_get(pods + "/{name}/status", get_pod)
    app.router.add_patch(pods + "/{name}", patch_pod)
    app.router.add_delete(pods + "/{name}", delete_pod)
    app.router.add_get(pods + "/{name}/log", read_log)
    app.router.add_post(pods + "/{name}/eviction", evict_pod)
    app.router.add_get(pods + "/{name}/exec", exec_pod)
    app.router.add_post(pods + "/{name}/exec", exec_pod)
