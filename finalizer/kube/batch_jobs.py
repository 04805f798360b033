"""Unary batch/v1 Job operations: read (uid checked), delete (uid precondition, propagation
policy), and the Job as upstream's ``V1Job.to_dict()`` shows it.

As for pods (``finalizer.kube.pods``): raw JSON, a ``(connect, read)`` timeout, a slot of the
cluster's semaphore, errors as :mod:`finalizer.exceptions` (a 404 is ``BatchJobNotFoundError``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from kubernetes_asyncio.client import ApiClient, BatchV1Api

from finalizer.batch_job import BatchJobView
from finalizer.exceptions import BatchJobNotFoundError, KubeTerminalError, PodConflictError
from finalizer.jobs import PropagationPolicy
from finalizer.kube.config import KubeSettings
from finalizer.kube.responses import bounded_call, parse_object
from finalizer.pod import JSON

log = logging.getLogger(__name__)

#: Largest Job JSON we accept from a GET or DELETE (an object is at most ~1.5 MiB in etcd).
MAX_JOB_BYTES = 4 * 1024 * 1024


class BatchJobOps:
    """Job reads and deletes against one cluster."""

    def __init__(self, batch: BatchV1Api, settings: KubeSettings, limiter: asyncio.Semaphore) -> None:
        self._batch = batch
        self._settings = settings
        self._limiter = limiter

    async def read_job(self, namespace: str, name: str) -> BatchJobView:
        """The Job as the API holds it now; ``BatchJobNotFoundError`` when it is gone."""
        what = f"read Job {namespace}/{name}"
        body = await bounded_call(
            self._limiter,
            self._settings.request_timeout,
            what,
            self._batch.read_namespaced_job,
            name,
            namespace,
            max_bytes=MAX_JOB_BYTES,
            not_found=BatchJobNotFoundError,
        )
        return BatchJobView(parse_object(body, what=what, expected="a Job"))

    async def read_job_by_uid(self, namespace: str, name: str, uid: str) -> BatchJobView:
        """Like :meth:`read_job`, but another Job under that name counts as gone."""
        job = await self.read_job(namespace, name)
        if job.uid != uid:
            raise BatchJobNotFoundError(
                f"Job {namespace}/{name} uid {uid} is gone (the name now has uid {job.uid})"
            )
        return job

    async def delete_job(
        self,
        namespace: str,
        name: str,
        uid: str,
        policy: PropagationPolicy,
        grace_period_seconds: int | None = None,
    ) -> bool:
        """Delete exactly this Job (uid precondition) with ``policy``. False when it was already gone.

        404 counts as gone (aiohttp re-sends a DELETE once after a reset connection, so a delete
        that succeeded can come back 404), and so does 409: the uid precondition failed, so the
        name holds another Job and ours is gone; that Job is not ours to delete. A Job being
        deleted already (a Foreground delete waiting for its pods) answers 200: True.
        """
        body: JSON = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            "propagationPolicy": policy,
        }
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        what = f"delete Job {namespace}/{name}"
        try:
            answer = await bounded_call(
                self._limiter,
                self._settings.request_timeout,
                what,
                self._batch.delete_namespaced_job,
                name,
                namespace,
                body=body,
                max_bytes=MAX_JOB_BYTES,
                not_found=BatchJobNotFoundError,
            )
        except BatchJobNotFoundError:
            return False
        except PodConflictError as exc:
            log.info("%s: uid %s is gone, another Job holds the name (%s)", what, uid, exc)
            return False
        parse_object(answer, what=what)
        return True


def job_to_dict(api: ApiClient, job: BatchJobView) -> dict[str, Any]:
    """The Job as upstream's ``V1Job.to_dict()`` gives it (the ``job`` XCom), but JSON-safe.

    The raw JSON is deserialized by kubernetes_asyncio's own ``ApiClient`` into a ``V1Job`` (the
    models upstream's sync client has, same generator), then ``to_dict()``: snake_case keys, None
    for every unset field. One difference, on purpose: upstream's trigger event (and so its XCom,
    through Airflow's serde) holds ``datetime`` objects; ours holds RFC 3339 strings
    (``2026-12-03T08:50:00Z``, as the API writes them), since our XCom goes out as plain JSON.
    """
    try:
        model = api._ApiClient__deserialize(job.raw, "V1Job")
        data = model.to_dict()
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise KubeTerminalError(f"Job {job.namespace}/{job.name} is not a valid V1Job: {exc}") from exc
    result = _json_safe(data)
    assert isinstance(result, dict)
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return rfc3339(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def rfc3339(moment: datetime.datetime) -> str:
    """As the API server writes times: UTC with ``Z``, microseconds only when there are some."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"
