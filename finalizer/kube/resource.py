"""What a shared watch watches: the LIST/WATCH call, the GET of one object, its view, its 404.

``WatchStream`` runs one loop for any of these; pods and batch/v1 Jobs are the two instances.
Only pods have members (a Job's pods, by owner uid): ``owner_of`` is None for Jobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic

from kubernetes_asyncio.client import BatchV1Api, CoreV1Api

from finalizer.batch_job import BatchJobView
from finalizer.exceptions import BatchJobNotFoundError, KubeTerminalError, PodNotFoundError
from finalizer.kube.batch_jobs import BatchJobOps
from finalizer.kube.members import owner_uid
from finalizer.kube.pods import PodOps
from finalizer.kube.responses import RawCall
from finalizer.kube.subscription import JobSubscription, ObjectSubscription, Subscription, V
from finalizer.pod import JSON, PodView


@dataclass(frozen=True)
class Resource(Generic[V]):
    #: How messages name one object and several ("pod" / "pods").
    noun: str
    plural: str
    #: The LIST body's kind, for the error when the body is something else.
    list_kind: str
    #: ``list_namespaced_*`` (called raw: ``_preload_content=False``), for LIST and WATCH.
    list_call: RawCall
    #: GET one object by name (a late subscriber's first state); raises ``not_found`` when absent.
    read: Callable[[str, str], Awaitable[V]]
    view: Callable[[JSON], V]
    subscription: Callable[[str, str, str, int], ObjectSubscription[V]]
    not_found: type[KubeTerminalError]
    #: The owner uid of an object (a pod's Job), for member subscriptions; None: no members.
    owner_of: Callable[[JSON], str | None] | None = None


def pod_resource(core: CoreV1Api, pods: PodOps) -> Resource[PodView]:
    return Resource(
        noun="pod",
        plural="pods",
        list_kind="a PodList",
        list_call=core.list_namespaced_pod,
        read=pods.read_pod,
        view=PodView,
        subscription=Subscription,
        not_found=PodNotFoundError,
        owner_of=owner_uid,
    )


def job_resource(batch: BatchV1Api, jobs: BatchJobOps) -> Resource[BatchJobView]:
    return Resource(
        noun="Job",
        plural="Jobs",
        list_kind="a JobList",
        list_call=batch.list_namespaced_job,
        read=jobs.read_job,
        view=BatchJobView,
        subscription=JobSubscription,
        not_found=BatchJobNotFoundError,
    )
