"""One shared API client per cluster, and the per-cluster façade the pipeline talks to.

Building an ``ApiClient`` builds an SSL context (tens of milliseconds of blocking CPU with the
system CA bundle) and an aiohttp session; ``KubernetesPodTrigger`` pays that on every poll. We
pay it once per ``ClusterRef.key``: ``KubeClients.get`` creates the ``KubeCluster`` on
first use (concurrent callers share the one being built) and ``aclose`` closes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes_asyncio.client.configuration import Configuration
from kubernetes_asyncio.stream import WsApiClient
from kubernetes_asyncio.stream.ws_client import get_websocket_url

from finalizer.batch_job import BatchJobView
from finalizer.exceptions import FinalizerUnavailableError
from finalizer.jobs import BatchJobRef, ClusterRef, PodRef, PropagationPolicy
from finalizer.kube.batch_jobs import BatchJobOps, job_to_dict
from finalizer.kube.config import KubeSettings, install_credential_refresh, load_configuration
from finalizer.kube.logs import LogStreams
from finalizer.kube.pods import PodOps
from finalizer.kube.sidecar import SidecarSession
from finalizer.kube.transport import detach_environment
from finalizer.kube.watcher import JobWatcher, PodWatcher
from finalizer.kube.xcom import ExecOps
from finalizer.pod import PodView
from finalizer.seams import BatchJobWatch, MemberWatch, PodWatch


class PodSidecar:
    """``finalizer.seams.SidecarOps`` over one ``SidecarSession``."""

    def __init__(self, session: SidecarSession) -> None:
        self._session = session

    async def read_xcom(self, max_bytes: int) -> tuple[bool, Any]:
        result = await self._session.read_xcom(max_bytes)
        return (not result.empty, result.value)

    async def stop(self) -> None:
        await self._session.stop()


class KubeCluster:
    """Everything the finalizer does to one cluster, over one shared client.

    Methods taking a ``PodRef`` or a ``BatchJobRef`` match ``finalizer.seams.ClusterOps``; the
    lower-level pieces are ``pods`` and ``jobs`` (unary calls), ``exec`` (XCom read, sidecar stop),
    ``watcher`` (pods, and a Job's pods by owner) and ``job_watcher`` (batch/v1 Jobs).
    """

    def __init__(self, configuration: Configuration, settings: KubeSettings | None = None) -> None:
        self.settings = settings or KubeSettings()
        configuration.connection_pool_maxsize = self.settings.pool_size
        self.configuration = configuration
        self.api = ApiClient(configuration)
        detach_environment(self.api.rest_client, configuration.host, proxy_per_request=True)
        self.core = CoreV1Api(self.api)
        self.batch = BatchV1Api(self.api)
        self._ws_api: WsApiClient | None = None
        self._ws_core: CoreV1Api | None = None
        #: Unary calls and exec sessions in flight (the long-lived watches are not counted).
        self.limiter = asyncio.Semaphore(self.settings.max_concurrency)
        self.pods = PodOps(self.core, self.settings, self.limiter)
        self.logs = LogStreams(self.core, self.settings)
        self.exec = ExecOps(self._exec_core, self.settings, self.limiter, self.pods.read_pod)
        self.watcher = PodWatcher(self.core, self.pods, self.settings, self.limiter)
        self.jobs = BatchJobOps(self.batch, self.settings, self.limiter)
        self.job_watcher = JobWatcher(self.batch, self.jobs, self.settings, self.limiter)
        self._closed = False

    def _exec_core(self) -> CoreV1Api:
        """The exec client, built on first use (WebSocket requests need their own ApiClient)."""
        if self._ws_core is None:
            self._ws_api = WsApiClient(self.configuration)
            ws_url = get_websocket_url(self.configuration.host) if self.configuration.host else None
            detach_environment(self._ws_api.rest_client, ws_url, proxy_per_request=False)
            self._ws_core = CoreV1Api(self._ws_api)
        return self._ws_core

    # --- finalizer.seams.ClusterOps -------------------------------------------------------------
    def watch(self, pod: PodRef) -> contextlib.AbstractAsyncContextManager[PodWatch]:
        return self.watcher.subscribe(pod.namespace, pod.name, pod.uid, pod.label_selector)

    async def read_pod(self, pod: PodRef) -> PodView:
        return await self.pods.read_pod_by_uid(pod.namespace, pod.name, pod.uid)

    @contextlib.asynccontextmanager
    async def sidecar(self, pod: PodRef) -> AsyncIterator[PodSidecar]:
        async with SidecarSession(self.exec, pod.namespace, pod.name, pod.uid) as session:
            yield PodSidecar(session)

    async def log_tail(self, pod: PodRef, lines: int, max_bytes: int) -> str | None:
        text = await self.pods.log_tail(
            pod.namespace, pod.name, pod.base_container, tail_lines=lines, limit_bytes=max_bytes
        )
        return text or None

    def log_lines(self, pod: PodRef, *, follow: bool, since_seconds: int | None) -> AsyncIterator[list[str]]:
        return self.logs.lines(
            pod.namespace, pod.name, pod.base_container, follow=follow, since_seconds=since_seconds
        )

    async def delete_pod(self, pod: PodRef, grace_period: int | None) -> bool:
        return await self.pods.delete_pod(pod.namespace, pod.name, pod.uid, grace_period)

    async def label_checked(self, pod: PodRef) -> None:
        await self.pods.label_checked(pod.namespace, pod.name, pod.uid)

    # --- batch/v1 Jobs (FinalizingJobTrigger) -----------------------------------------------------
    def watch_batch_job(self, job: BatchJobRef) -> contextlib.AbstractAsyncContextManager[BatchJobWatch]:
        """The Job on its namespace's shared Job watch (by name + uid)."""
        return self.job_watcher.subscribe(job.namespace, job.name, job.uid)

    def watch_members(self, job: BatchJobRef) -> contextlib.AbstractAsyncContextManager[MemberWatch]:
        """The Job's pods, by controller-uid label, on the namespace's shared pod watch."""
        return self.watcher.members(job.namespace, job.uid)

    async def read_batch_job(self, job: BatchJobRef) -> BatchJobView:
        return await self.jobs.read_job_by_uid(job.namespace, job.name, job.uid)

    async def delete_batch_job(
        self, job: BatchJobRef, policy: PropagationPolicy, grace_period: int | None = None
    ) -> bool:
        return await self.jobs.delete_job(job.namespace, job.name, job.uid, policy, grace_period)

    def batch_job_dict(self, job: BatchJobView) -> dict[str, Any]:
        return job_to_dict(self.api, job)

    # --- lifecycle ----------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop every watch, then close both clients (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                await self.watcher.aclose()
            finally:
                await self.job_watcher.aclose()
        finally:
            try:
                await self.api.close()
            finally:
                if self._ws_api is not None:
                    await self._ws_api.close()


class KubeClients:
    """The process-wide pool: one ``KubeCluster`` per ``ClusterRef.key``."""

    def __init__(self, settings: KubeSettings | None = None) -> None:
        self.settings = settings or KubeSettings()
        self._clusters: dict[str, asyncio.Task[KubeCluster]] = {}
        self._closed = False

    async def get(self, cluster: ClusterRef) -> KubeCluster:
        """The shared client of ``cluster``, created once; a failed creation is retried next call.

        After ``aclose`` this raises ``FinalizerUnavailableError``: a job that asks for a cluster while
        the service shuts down ends with the service's own "not running" error, not a crash.
        """
        if self._closed:
            raise FinalizerUnavailableError("the Kubernetes client pool is closed (the finalizer stopped)")
        key = cluster.key
        task = self._clusters.get(key)
        if task is None:
            task = asyncio.ensure_future(self._create(cluster))
            self._clusters[key] = task
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._clusters.get(key) is task and task.done():
                del self._clusters[key]
            raise

    async def _create(self, cluster: ClusterRef) -> KubeCluster:
        configuration, short_lived = await load_configuration(cluster)
        if short_lived:
            install_credential_refresh(configuration, cluster, self.settings.credential_refresh_seconds)
        return KubeCluster(configuration, self.settings)

    def __len__(self) -> int:
        return len(self._clusters)

    async def aclose(self) -> None:
        """Close every cluster client; later ``get`` calls fail."""
        self._closed = True
        tasks = list(self._clusters.values())
        self._clusters.clear()
        for task in tasks:
            if not task.done():
                task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, KubeCluster):
                await result.aclose()

    async def __aenter__(self) -> KubeClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@contextlib.asynccontextmanager
async def cluster_from_kubeconfig(
    kubeconfig: dict[str, Any], settings: KubeSettings | None = None
) -> AsyncIterator[KubeCluster]:
    """A one-off ``KubeCluster`` from a kubeconfig dict (tests, benchmarks, the demo)."""
    async with KubeClients(settings) as clients:
        yield await clients.get(ClusterRef(config_dict=kubeconfig))
