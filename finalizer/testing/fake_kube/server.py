"""``FakeKube``: the fake API server's public face — start/stop, in-thread mode, test helpers.

The server runs on one event loop (the caller's, or its own daemon thread with ``in_thread()``).
Every helper is a plain sync method, callable from any thread: off the loop it is marshalled onto
it and waited for, so a test on another thread sees the change (and its watch event) done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from finalizer.testing.fake_kube import job_spec, lifecycle
from finalizer.testing.fake_kube.cluster import Cluster, ExecCommand
from finalizer.testing.fake_kube.faults import Faults, RequestLog, RequestRecord, make_middleware
from finalizer.testing.fake_kube.job_controller import POLICIES, JobController
from finalizer.testing.fake_kube.job_routes import JOBS_KEY, add_job_routes
from finalizer.testing.fake_kube.jobs import JobStore
from finalizer.testing.fake_kube.kubelet import AutoKubelet
from finalizer.testing.fake_kube.routes import CLUSTER_KEY, CREATED_KEY, STOP_KEY, add_routes
from finalizer.testing.fake_kube.selectors import Selector
from finalizer.testing.fake_kube.store import with_kind
from finalizer.testing.fake_kube.thread import CALL_TIMEOUT, serve_in_thread
from finalizer.testing.fake_kube.wire import JSON, clone

T = TypeVar("T")


class FakeKube:
    """A wire-faithful fake Kubernetes API server on ``127.0.0.1`` (ephemeral port)."""

    def __init__(
        self,
        *,
        history_limit: int = 10_000,
        bookmark_interval: float = 1.0,
        deletion_delay: float = 0.0,
        token: str = "fake-kube-token",
        port: int = 0,
        require_token: bool = False,
        authorize: Callable[[str | None], bool] | None = None,
    ) -> None:
        self.cluster = Cluster(history_limit=history_limit)
        self.cluster.bookmark_interval = bookmark_interval
        self.cluster.deletion_delay = deletion_delay
        self.faults = Faults()
        #: Added to every request before it is handled (benchmarks: simulated API round trip).
        self.latency = 0.0
        self.token = token
        #: Answer 401 to requests without ``Authorization: Bearer <token>`` (clients must send it).
        self.require_token = require_token
        #: Answer 401 when this says no to the ``Authorization`` header (tokens that expire).
        self.authorize = authorize
        #: The listening port: 0 (ephemeral) until the server runs, unless given.
        self.port = port
        self._log = RequestLog()
        self._kubelet = AutoKubelet(self.cluster)
        #: batch/v1 Jobs and their controller (it creates pods the auto-kubelet then runs).
        self.jobs = JobController(
            self.cluster,
            JobStore(history_limit=history_limit),
            lambda ns, name: self._kubelet.on_api_create(ns, name),
        )
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._names = 0

    # --- running -------------------------------------------------------------------------------
    async def open(self) -> FakeKube:
        """Start serving on the running loop (``async with`` does this)."""
        app = web.Application(
            middlewares=[
                make_middleware(
                    self.faults,
                    self._log,
                    lambda: self.latency,
                    self.token if self.require_token else None,
                    self.authorize,
                )
            ]
        )
        app[CLUSTER_KEY] = self.cluster
        app[STOP_KEY] = self._stop_container
        app[CREATED_KEY] = self._kubelet.on_api_create
        app[JOBS_KEY] = self.jobs
        add_routes(app)
        add_job_routes(app)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._runner = runner
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.cluster.loop = self._loop
        self.port = int(runner.addresses[0][1])
        return self

    async def close(self) -> None:
        """Stop: end watches and exec sessions, close the listener."""
        self.cluster.cancel_timers()
        self.cluster.store.close_watchers()
        self.cluster.events.close_watchers()
        self.jobs.jobs.close_watchers()
        for runtime in self.cluster.store.runtime.values():
            for event in runtime.stopped.values():
                event.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._loop = None
        self._loop_thread = None

    async def __aenter__(self) -> FakeKube:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @classmethod
    @contextmanager
    def in_thread(
        cls, *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None, **options: Any
    ) -> Iterator[FakeKube]:
        """Serve from a daemon thread with its own event loop (``loop_factory``'s, e.g. uvloop's);
        stop and join on exit."""
        kube = cls(**options)
        with serve_in_thread(kube.open, kube.close, loop_factory=loop_factory):
            yield kube

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError(
                "FakeKube is not running (use `async with FakeKube()` or FakeKube.in_thread())"
            )
        if threading.get_ident() == self._loop_thread:
            # On the loop's own thread (inside a coroutine, or between loop runs as in sync
            # fixtures): nothing else can touch the state right now, so run directly.
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=CALL_TIMEOUT)

    # --- connection details ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> JSON:
        """For ``load_kube_config_from_dict`` (kubernetes_asyncio and the sync client alike)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake-kube",
            "clusters": [{"name": "fake-kube", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-kube", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake-kube",
                    "context": {"cluster": "fake-kube", "user": "fake-kube", "namespace": "default"},
                }
            ],
        }

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write the kubeconfig as a file (JSON is valid YAML) for tools that want a path."""
        target = Path(path)
        target.write_text(json.dumps(self.kubeconfig, indent=2))
        return target

    # --- lifecycle helpers -------------------------------------------------------------------------
    def create_pod(
        self,
        namespace: str,
        manifest: JSON | None = None,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        with_xcom_sidecar: bool = True,
        base_container: str = "base",
    ) -> JSON:
        """Create a pod as if through the API (no auto-kubelet); returns it as the API would."""
        if manifest is None:
            self._names += 1
            manifest = lifecycle.default_manifest(
                name or f"pod-{self._names}-{lifecycle.random_suffix()}",
                labels,
                with_xcom_sidecar,
                base_container,
            )
        else:
            manifest = clone(manifest)
            meta = manifest.setdefault("metadata", {})
            if name:
                meta["name"] = name
            if labels:
                meta["labels"] = {**(meta.get("labels") or {}), **labels}
        return with_kind(clone(self._call(self.cluster.create, namespace, manifest)))

    def schedule(self, namespace: str, name: str, node: str = "node-1") -> JSON:
        return with_kind(clone(self._call(self.cluster.schedule, namespace, name, node)))

    def start(self, namespace: str, name: str) -> JSON:
        """Scheduled (if not yet) and running: every container running and ready."""
        return with_kind(clone(self._call(self.cluster.start, namespace, name)))

    def write_xcom(self, namespace: str, name: str, content: bytes | str) -> None:
        """Write ``/airflow/xcom/return.json`` in the pod's XCom volume."""
        self.write_file(namespace, name, lifecycle.XCOM_FILE, content)

    def write_file(self, namespace: str, name: str, path: str, content: bytes | str) -> None:
        data = content.encode() if isinstance(content, str) else bytes(content)
        self._call(self.cluster.write_file, namespace, name, path, data)

    def terminate(
        self,
        namespace: str,
        name: str,
        container: str = "base",
        exit_code: int = 0,
        message: str | None = None,
        reason: str | None = None,
    ) -> JSON:
        """The container exits (``message`` = its termination message); exec sessions into it end."""
        return with_kind(
            clone(self._call(self.cluster.terminate, namespace, name, container, exit_code, message, reason))
        )

    def image_pull_failure(
        self,
        namespace: str,
        name: str,
        reason: str = "ImagePullBackOff",
        message: str | None = None,
        container: str = "base",
    ) -> JSON:
        return with_kind(
            clone(self._call(self.cluster.image_pull_failure, namespace, name, container, reason, message))
        )

    def unschedulable(self, namespace: str, name: str, message: str | None = None) -> JSON:
        return with_kind(clone(self._call(self.cluster.unschedulable, namespace, name, message)))

    def evict(self, namespace: str, name: str, *, remove: bool = True) -> None:
        """Scale-down eviction: DisruptionTarget + deletionTimestamp, containers 143/137, DELETED.

        ``remove=False`` leaves the pod in the API with dead containers (then ``force_delete``).
        """
        self._call(self.cluster.evict, namespace, name, remove)

    def force_delete(self, namespace: str, name: str) -> JSON | None:
        """Gone from the API at once (``--grace-period=0 --force``); DELETED is emitted."""
        removed = self._call(self.cluster.force_delete, namespace, name)
        return clone(removed) if removed is not None else None

    def kubelet_forget(self, namespace: str, name: str) -> None:
        """The pod stays in the API but its containers are gone from the node: exec answers 500."""
        self._call(self.cluster.kubelet_forget, namespace, name)

    def drop_exec_sessions(self, namespace: str, name: str) -> int:
        """Cut every open exec session into the pod mid-stream (TCP RST, no exit status); how many."""
        return self._call(self.cluster.drop_exec_sessions, namespace, name)

    def node_unreachable(self, namespace: str, name: str, unreachable: bool = True) -> None:
        """The pod's node stops answering: exec and log fail 500 (``error dialing backend``) until reset."""
        self._call(self.cluster.node_unreachable, namespace, name, unreachable)

    def set_logs(self, namespace: str, name: str, container: str, lines: list[str]) -> None:
        self._call(self.cluster.set_logs, namespace, name, container, list(lines))

    def append_logs(self, namespace: str, name: str, container: str, lines: list[str]) -> None:
        """Add log lines (followers see them)."""
        self._call(self.cluster.append_logs, namespace, name, container, list(lines))

    def get_pod(self, namespace: str, name: str) -> JSON | None:
        def read() -> JSON | None:
            pod = self.cluster.store.get(namespace, name)
            return with_kind(clone(pod)) if pod is not None else None

        return self._call(read)

    def list_pods(self, namespace: str | None = None) -> list[JSON]:
        return self._call(
            lambda: [
                clone(p)
                for (ns, _), p in sorted(self.cluster.store.pods.items())
                if namespace is None or ns == namespace
            ]
        )

    def compact(self) -> int:
        """Forget the watch history (pods, events, Jobs): resuming from any earlier rv gets 410 Expired."""

        def compact_all() -> int:
            self.cluster.events.compact()
            self.jobs.jobs.compact()
            return self.cluster.store.compact()

        return self._call(compact_all)

    def events(self, namespace: str | None = None, name: str | None = None) -> list[JSON]:
        """Events recorded so far (optionally for one pod), oldest first."""

        def read() -> list[JSON]:
            return [
                clone(e)
                for e in self.cluster.events.list(namespace, Selector(), Selector())
                if name is None or e["involvedObject"]["name"] == name
            ]

        return self._call(read)

    @property
    def resource_version(self) -> int:
        return self._call(lambda: self.cluster.store.rv)

    @property
    def bookmark_interval(self) -> float:
        return self.cluster.bookmark_interval

    @bookmark_interval.setter
    def bookmark_interval(self, seconds: float) -> None:
        self.cluster.bookmark_interval = seconds

    @property
    def deletion_delay(self) -> float:
        return self.cluster.deletion_delay

    @deletion_delay.setter
    def deletion_delay(self, seconds: float) -> None:
        self.cluster.deletion_delay = seconds

    def auto_kubelet(
        self,
        enabled: bool = True,
        *,
        start_delay: float = 0.05,
        run_seconds: float = 0.2,
        node: str = "node-1",
    ) -> None:
        """Schedule, start and finish pods created through the API (scripted by annotations)."""
        self._kubelet.enabled = enabled
        self._kubelet.start_delay = start_delay
        self._kubelet.run_seconds = run_seconds
        self._kubelet.node = node

    # --- Jobs ------------------------------------------------------------------------------------
    def create_job(self, namespace: str, manifest: JSON) -> JSON:
        """Create a Job as if through the API; an invalid one is a ValueError with the API's message."""

        def create() -> JSON:
            body = clone(manifest)
            errors = job_spec.validate(body)
            if errors:
                raise ValueError(job_spec.invalid_message(str(body.get("metadata", {}).get("name")), errors))
            return self.jobs.jobs.add(namespace, body)

        return self.jobs.jobs.with_kind(clone(self._call(create)))

    def get_job(self, namespace: str, name: str) -> JSON | None:
        def read() -> JSON | None:
            job = self.jobs.jobs.get(namespace, name)
            return self.jobs.jobs.with_kind(clone(job)) if job is not None else None

        return self._call(read)

    def list_jobs(self, namespace: str | None = None) -> list[JSON]:
        return self._call(lambda: [clone(j) for j in self.jobs.jobs.list(namespace, Selector(), Selector())])

    def job_pods(self, namespace: str, name: str) -> list[JSON]:
        """The pods the Job's controller created and still owns, by name."""

        def read() -> list[JSON]:
            job = self.jobs.jobs.get(namespace, name)
            if job is None:
                return []
            uid = job["metadata"]["uid"]
            return [
                clone(p)
                for p in self.cluster.store.list(namespace, Selector(), Selector())
                if job_spec.owner_uid(p) == uid
            ]

        return self._call(read)

    def delete_job(self, namespace: str, name: str, propagation_policy: str = "Background") -> None:
        """Delete a Job as the API does with ``propagation_policy`` (Foreground, Background, Orphan)."""
        if propagation_policy not in POLICIES:
            raise ValueError(f"propagation_policy must be one of {POLICIES}, not {propagation_policy!r}")

        def delete() -> None:
            if self.jobs.jobs.get(namespace, name) is None:
                raise KeyError(f"job {namespace}/{name} does not exist in the fake API")
            self.jobs.api_delete(namespace, name, propagation_policy)

        self._call(delete)

    @property
    def job_backoff_seconds(self) -> float:
        """Base of the back-off before a failed Job pod is replaced (a real cluster: 10 s, doubling)."""
        return self.jobs.backoff_seconds

    @job_backoff_seconds.setter
    def job_backoff_seconds(self, seconds: float) -> None:
        self.jobs.backoff_seconds = seconds

    # --- observation -----------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    def exec_commands(self, namespace: str | None = None, name: str | None = None) -> list[ExecCommand]:
        """Commands exec sessions ran (argv, or each stdin line of a shell), optionally for one pod."""
        return [
            c
            for c in list(self.cluster.exec_commands)
            if (namespace is None or c.namespace == namespace) and (name is None or c.name == name)
        ]

    def request_counts(self) -> Counter[tuple[str, str]]:
        return self._log.counts()

    def clear_requests(self) -> None:
        """Forget the request log and the exec command log (both start counting afresh)."""
        self._log.clear()
        self.cluster.exec_commands.clear()

    def _stop_container(self, namespace: str, name: str, container: str) -> None:
        """SIGINT to PID 1: the sidecar's ``trap "exit 0" INT`` exits 0; others die 130."""
        pod = self.cluster.store.get(namespace, name)
        if pod is None or lifecycle.container_state(pod, container) != "running":
            return
        code = 0 if container == lifecycle.XCOM_SIDECAR else 130
        self.cluster.terminate(namespace, name, container, code, None, None)
