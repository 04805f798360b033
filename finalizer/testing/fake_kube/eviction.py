"""``POST pods/{name}/eviction``: the Eviction API, as kube-apiserver (1.31+) answers it.

A real eviction (``kubectl drain``, the cluster autoscaler's scale-down) first marks the pod with the
``DisruptionTarget`` condition (reason ``EvictionByEvictionAPI``, GA since 1.31), then deletes it
gracefully: ``deletionTimestamp`` at once, the containers end and the pod leaves the API when the
grace period is over (here ``Cluster.deletion_delay``, as for any graceful delete). So the pod shows
the eviction while its containers still run, which is when the finalizer must see it.

Answers: 201 with a ``Status`` of ``Success``; 404 for a missing pod; 400 for a body that is not an
``Eviction`` of this pod; 409 on a uid precondition of another pod. PodDisruptionBudgets are not
modelled (no 429 "Cannot evict pod as it would violate the pod's disruption budget").
"""

from __future__ import annotations

import json

from aiohttp import web

from finalizer.testing.fake_kube import lifecycle
from finalizer.testing.fake_kube.cluster import Cluster
from finalizer.testing.fake_kube.wire import JSON, json_response, not_found, status_response


def _bad_request(message: str) -> web.Response:
    return status_response(400, message, "BadRequest")


async def handle_eviction(request: web.Request, cluster: Cluster, namespace: str, name: str) -> web.Response:
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError as exc:
        return _bad_request(f"the body is not JSON: {exc}")
    # Like kube-apiserver, a body without kind/apiVersion is decoded as the endpoint's type (the
    # official Python client sends a V1Eviction without them); another kind is refused.
    if not isinstance(body, dict) or body.get("kind", "Eviction") != "Eviction":
        return _bad_request("the body must be an Eviction object (policy/v1)")
    if body.get("apiVersion", "policy/v1") not in ("policy/v1", "policy/v1beta1"):
        return _bad_request(f"unsupported apiVersion {body.get('apiVersion')!r} for an Eviction")
    meta = body.get("metadata") or {}
    if meta.get("name") not in (None, name):
        return _bad_request(
            f"name in URL does not match name in Eviction object: {name} != {meta.get('name')}"
        )
    pod = cluster.store.get(namespace, name)
    if pod is None:
        return not_found(name)
    options: JSON = body.get("deleteOptions") or {}
    uid = (options.get("preconditions") or {}).get("uid")
    if uid is not None and uid != pod["metadata"]["uid"]:
        message = (
            f'Operation cannot be fulfilled on Pod "{name}": Precondition failed: UID in precondition: '
            f"{uid}, UID in object meta: {pod['metadata']['uid']}"
        )
        return status_response(409, message, "Conflict", {"name": name, "kind": "Pod"})
    grace = options.get("gracePeriodSeconds")
    if "deletionTimestamp" not in pod["metadata"]:
        cluster.store.update(namespace, name, lifecycle.disruption)
        cluster.api_delete(namespace, name, None if grace is None else int(grace))
    return json_response(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, status=201
    )
