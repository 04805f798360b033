"""HTTP handlers for ``/apis/batch/v1/…/jobs``: LIST/WATCH, GET (and ``/status``), CREATE, PATCH, DELETE.

Answers as kube-apiserver gives them for the batch group: ``jobs.batch "x" not found``, a 422 with
``details.causes`` for an invalid Job, the ``Success`` Status of a Job deleted at once, the Job
itself while a Foreground/Orphan deletion is under way, and the warning a DELETE without a
``propagationPolicy`` gets (batch/v1 orphans the pods then).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from finalizer.testing.fake_kube import job_spec, lifecycle
from finalizer.testing.fake_kube.job_controller import POLICIES, JobController
from finalizer.testing.fake_kube.jobs import JOB_FIELDS
from finalizer.testing.fake_kube.routes import CLUSTER_KEY, list_or_watch_store, merge_patch
from finalizer.testing.fake_kube.wire import JSON, json_response, parse_bool, status_body, status_response

JOBS_KEY = web.AppKey("jobs", JobController)
IMMUTABLE_META = ("uid", "name", "namespace", "creationTimestamp", "resourceVersion", "generation")

#: kube-apiserver's warning for a Job DELETE that names no propagation policy.
ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background '
    'to remove them or set propagationPolicy=Orphan to suppress this warning"'
)


def _controller(request: web.Request) -> JobController:
    return request.app[JOBS_KEY]


def _details(name: str, **extra: Any) -> JSON:
    return {"name": name, "group": "batch", "kind": "jobs", **extra}


def _not_found(name: str) -> web.Response:
    return status_response(404, f'jobs.batch "{name}" not found', "NotFound", _details(name))


def _job_response(controller: JobController, job: JSON, status: int = 200) -> web.Response:
    return web.Response(text=controller.jobs.encode(job), status=status, content_type="application/json")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw else None


async def list_or_watch_jobs(request: web.Request) -> web.StreamResponse:
    controller = _controller(request)
    interval = request.app[CLUSTER_KEY].bookmark_interval
    return await list_or_watch_store(request, controller.jobs, "JobList", JOB_FIELDS, interval, "batch/v1")


async def get_job(request: web.Request) -> web.Response:
    controller = _controller(request)
    name = request.match_info["name"]
    job = controller.jobs.get(request.match_info["namespace"], name)
    return _not_found(name) if job is None else _job_response(controller, job)


async def create_job(request: web.Request) -> web.Response:
    controller = _controller(request)
    namespace = request.match_info["namespace"]
    try:
        body = await _body(request)
    except ValueError as exc:
        return status_response(400, f"error decoding request body: {exc}", "BadRequest")
    if not isinstance(body, dict):
        return status_response(400, "the body of the request was in an unknown format", "BadRequest")
    meta = body.get("metadata") or {}
    body["metadata"] = meta
    if meta.get("namespace") not in (None, "", namespace):
        return status_response(
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
            "BadRequest",
        )
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + lifecycle.random_suffix()
    errors = job_spec.validate(body)
    name = str(meta.get("name") or "")
    if errors:
        return _invalid(name, errors)
    if controller.jobs.get(namespace, name) is not None:
        return status_response(409, f'jobs.batch "{name}" already exists', "AlreadyExists", _details(name))
    job = controller.jobs.add(namespace, body)
    return _job_response(controller, job, status=201)


def _policy(request: web.Request, body: JSON) -> tuple[str | None, web.Response | None]:
    """The propagation policy asked for (query or DeleteOptions), or the API's 422 for a bad one."""
    policy = request.query.get("propagationPolicy") or body.get("propagationPolicy")
    try:
        orphan = parse_bool(request.query.get("orphanDependents"))
    except ValueError as exc:
        return None, status_response(400, str(exc), "BadRequest")
    if orphan is None and isinstance(body.get("orphanDependents"), bool):
        orphan = body["orphanDependents"]
    invalid = 'DeleteOptions.meta.k8s.io "" is invalid: '
    if policy is not None and orphan is not None:
        message = (
            f'propagationPolicy: Invalid value: "{policy}": '
            "orphanDependents and deletionPropagation cannot be both set"
        )
        return None, status_response(422, invalid + message, "Invalid")
    if policy is not None and policy not in POLICIES:
        options = ", ".join(f'"{p}"' for p in POLICIES)
        message = f'propagationPolicy: Unsupported value: "{policy}": supported values: {options}'
        return None, status_response(422, invalid + message, "Invalid")
    if orphan is not None:
        policy = "Orphan" if orphan else "Background"
    return policy, None


async def delete_job(request: web.Request) -> web.Response:
    controller = _controller(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    try:
        body = await _body(request) or {}
    except ValueError as exc:
        return status_response(400, f"error decoding request body: {exc}", "BadRequest")
    if not isinstance(body, dict):
        return status_response(400, "the body of the request was in an unknown format", "BadRequest")
    policy, refused = _policy(request, body)
    if refused is not None:
        return refused
    job = controller.jobs.get(namespace, name)
    if job is None:
        return _not_found(name)
    preconditions = body.get("preconditions") or {}
    uid = preconditions.get("uid")
    if uid is not None and uid != job["metadata"]["uid"]:
        message = (
            f'Operation cannot be fulfilled on jobs.batch "{name}": Precondition failed: '
            f"UID in precondition: {uid}, UID in object meta: {job['metadata']['uid']}"
        )
        return status_response(409, message, "Conflict", _details(name))
    headers = {"Warning": ORPHAN_WARNING} if policy is None else {}
    obj, gone = controller.api_delete(namespace, name, policy or "Orphan")
    if gone:
        body = status_body(200, "", None, _details(name, uid=obj["metadata"]["uid"]))
        body.update(status="Success")
        for key in ("message", "reason", "code"):
            body.pop(key, None)
        return json_response(body, headers=headers)
    response = _job_response(controller, obj)
    response.headers.update(headers)
    return response


_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def _invalid(name: str, errors: list[job_spec.FieldError]) -> web.Response:
    causes = [{"reason": e.reason, "message": e.message, "field": e.field} for e in errors]
    return status_response(
        422,
        job_spec.invalid_message(name, errors),
        "Invalid",
        {"name": name, "group": "batch", "kind": "Job", "causes": causes},
    )


async def patch_job(request: web.Request) -> web.Response:
    """Merge patch (strategic merge treated alike, as for pods): labels, parallelism, suspend, …"""
    controller = _controller(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type not in _PATCH_TYPES:
        return status_response(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(_PATCH_TYPES),
            "UnsupportedMediaType",
        )
    current = controller.jobs.get(namespace, name)
    if current is None:
        return _not_found(name)
    try:
        patch = await _body(request)
    except ValueError as exc:
        return status_response(400, f"error decoding patch: {exc}", "BadRequest")
    if not isinstance(patch, dict):
        return status_response(400, "patch must be a JSON object", "BadRequest")
    wanted = patch.get("metadata") or {}
    if wanted.get("uid") not in (None, current["metadata"]["uid"]):
        invalid = f'Invalid value: "{wanted["uid"]}": field is immutable'
        return status_response(422, f'Job.batch "{name}" is invalid: metadata.uid: {invalid}', "Invalid")
    if wanted.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
        message = (
            f'Operation cannot be fulfilled on jobs.batch "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )
        return status_response(409, message, "Conflict", _details(name))
    merged = merge_patch(current, patch)
    for key in IMMUTABLE_META:
        merged["metadata"][key] = current["metadata"].get(key)
    merged["metadata"] = {k: v for k, v in merged["metadata"].items() if v is not None}
    merged["status"] = current.get("status") or {}  # the status subresource is the controller's
    merged.pop("kind", None)
    merged.pop("apiVersion", None)
    errors = job_spec.validate_update(current, merged)
    if errors:
        return _invalid(name, errors)
    if merged.get("spec") != current.get("spec"):
        merged["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1

    def apply(job: JSON) -> None:
        job.clear()
        job.update(merged)

    return _job_response(controller, controller.jobs.update(namespace, name, apply))


async def discovery(request: web.Request) -> web.Response:
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    return json_response(
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "batch/v1",
            "resources": [
                {"name": "jobs", "singularName": "job", "namespaced": True, "kind": "Job", "verbs": verbs},
                {
                    "name": "jobs/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Job",
                    "verbs": ["get"],
                },
            ],
        }
    )


def add_job_routes(app: web.Application) -> None:
    jobs = "/apis/batch/v1/namespaces/{namespace}/jobs"
    app.router.add_get("/apis/batch/v1", discovery)
    app.router.add_get("/apis/batch/v1/", discovery)
    app.router.add_get("/apis/batch/v1/jobs", list_or_watch_jobs)
    app.router.add_get(jobs, list_or_watch_jobs)
    app.router.add_post(jobs, create_job)
    app.router.add_get(jobs + "/{name}", get_job)
    app.router.add_get(jobs + "/{name}/status", get_job)
    app.router.add_patch(jobs + "/{name}", patch_job)
    app.router.add_delete(jobs + "/{name}", delete_job)
