"""The simulated cluster: store + scheduler/kubelet actions + API deletion semantics.

Everything here runs on the server's event loop (``FakeKube`` marshals calls from other threads).
Container stops also end every exec session into that container, as the real runtime does.
Pods returned here are the store's snapshots, never edited in place (``PodStore.update`` writes a
new object): read them, do not change them; ``FakeKube`` hands its callers copies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from finalizer.testing.fake_kube import lifecycle
from finalizer.testing.fake_kube.events import EventStore
from finalizer.testing.fake_kube.store import PodStore
from finalizer.testing.fake_kube.wire import JSON, now, reset_transport


class PodMissingError(KeyError):
    """A lifecycle helper named a pod the store does not hold."""


@dataclass(frozen=True, slots=True)
class ExecCommand:
    """One command an exec session ran (what a test counts: reads vs stops)."""

    namespace: str
    name: str
    container: str
    text: str


class Cluster:
    def __init__(self, history_limit: int = 10_000) -> None:
        self.store = PodStore(history_limit=history_limit)
        self.events = EventStore(history_limit=history_limit)
        #: Seconds between a graceful API DELETE and the pod leaving the API (kubelet kill time).
        self.deletion_delay = 0.0
        #: Seconds between BOOKMARK events on watches that allow them.
        self.bookmark_interval = 1.0
        self._timers: set[asyncio.TimerHandle] = set()
        #: The loop serving the API (set by ``FakeKube.open``); timers run there.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Every command an exec session ran, in order: its argv, or one stdin line of a shell.
        self.exec_commands: list[ExecCommand] = []

    # --- helpers -------------------------------------------------------------------------------
    def _require(self, namespace: str, name: str) -> JSON:
        pod = self.store.get(namespace, name)
        if pod is None:
            raise PodMissingError(f"pod {namespace}/{name} does not exist in the fake API")
        return pod

    def _mutate(self, namespace: str, name: str, mutate: Callable[[JSON], None]) -> JSON:
        self._require(namespace, name)
        return self.store.update(namespace, name, mutate)

    def _container_stopped(self, namespace: str, name: str, container: str) -> None:
        runtime = self.store.runtime.get((namespace, name))
        if runtime is not None:
            runtime.stop_event(container).set()

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = self.loop or asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = loop.call_later(max(delay, 0.0), fire)
        self._timers.add(handle)

    def cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    # --- scheduler / kubelet ---------------------------------------------------------------------
    def create(self, namespace: str, manifest: JSON) -> JSON:
        return self.store.add(namespace, manifest)

    def schedule(self, namespace: str, name: str, node: str) -> JSON:
        was_bound = "nodeName" in self._require(namespace, name)["spec"]
        pod = self._mutate(namespace, name, lambda p: lifecycle.schedule(p, node))
        if not was_bound:
            message = f"Successfully assigned {namespace}/{name} to {node}"
            self.events.record(pod, "Scheduled", message, component="default-scheduler")
        return pod

    def start(self, namespace: str, name: str) -> JSON:
        before = self._require(namespace, name)
        if "nodeName" not in before["spec"]:
            self.schedule(namespace, name, "node-1")
            before = self._require(namespace, name)
        waiting = [
            c for c in lifecycle.container_names(before) if lifecycle.container_state(before, c) != "running"
        ]
        waiting = [c for c in waiting if lifecycle.container_state(before, c) != "terminated"]
        pod = self._mutate(namespace, name, lifecycle.start)
        for container in waiting:
            image = lifecycle.image_of(pod, container)
            path = f"spec.containers{{{container}}}"
            self.events.record(
                pod, "Pulled", f'Container image "{image}" already present on machine', field_path=path
            )
            self.events.record(pod, "Created", f"Created container: {container}", field_path=path)
            self.events.record(pod, "Started", f"Started container {container}", field_path=path)
        return pod

    def write_file(self, namespace: str, name: str, path: str, content: bytes) -> None:
        self._require(namespace, name)
        self.store.runtime_of(namespace, name).files[path] = content

    def terminate(
        self,
        namespace: str,
        name: str,
        container: str,
        exit_code: int,
        message: str | None,
        reason: str | None,
    ) -> JSON:
        pod = self._require(namespace, name)
        if container not in lifecycle.container_names(pod):
            raise ValueError(f"pod {namespace}/{name} has no container {container!r}")
        result = self._mutate(
            namespace, name, lambda p: lifecycle.terminate(p, container, exit_code, message, reason)
        )
        self._container_stopped(namespace, name, container)
        return result

    def image_pull_failure(
        self, namespace: str, name: str, container: str, reason: str, message: str | None
    ) -> JSON:
        pod = self._mutate(
            namespace, name, lambda p: lifecycle.image_pull_failure(p, container, reason, message)
        )
        image = lifecycle.image_of(pod, container)
        path = f"spec.containers{{{container}}}"
        text = ((lifecycle.container_status(pod, container) or {}).get("state") or {}).get("waiting", {})
        self.events.record(pod, "Pulling", f'Pulling image "{image}"', field_path=path)
        self.events.record(pod, "Failed", str(text.get("message", "")), type_="Warning", field_path=path)
        self.events.record(pod, "Failed", f"Error: {reason}", type_="Warning", field_path=path)
        if reason == "ImagePullBackOff":
            self.events.record(
                pod, "BackOff", f'Back-off pulling image "{image}"', type_="Warning", field_path=path
            )
        return pod

    def unschedulable(self, namespace: str, name: str, message: str | None) -> JSON:
        pod = self._mutate(namespace, name, lambda p: lifecycle.unschedulable(p, message))
        condition = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        self.events.record(
            pod, "FailedScheduling", condition["message"], type_="Warning", component="default-scheduler"
        )
        return pod

    def set_logs(self, namespace: str, name: str, container: str, lines: list[str]) -> None:
        self._require(namespace, name)
        stamp = now()
        self.store.runtime_of(namespace, name).logs[container] = [(stamp, line) for line in lines]

    def append_logs(self, namespace: str, name: str, container: str, lines: list[str]) -> None:
        self._require(namespace, name)
        stamp = now()
        self.store.runtime_of(namespace, name).logs.setdefault(container, []).extend(
            (stamp, line) for line in lines
        )

    def kubelet_forget(self, namespace: str, name: str) -> None:
        """The node lost the pod's containers (node replaced, runtime wiped): exec fails 500."""
        self._require(namespace, name)
        runtime = self.store.runtime_of(namespace, name)
        runtime.forgotten = True
        runtime.files.clear()
        for container in lifecycle.container_names(self._require(namespace, name)):
            runtime.stop_event(container).set()

    def drop_exec_sessions(self, namespace: str, name: str) -> int:
        """Reset (TCP RST) the connection of every open exec session into the pod; how many."""
        transports = self.store.runtime_of(namespace, name).exec_transports
        dropped = len(transports)
        for transport in list(transports):
            reset_transport(transport)
        transports.clear()
        return dropped

    def node_unreachable(self, namespace: str, name: str, unreachable: bool) -> None:
        self._require(namespace, name)
        self.store.runtime_of(namespace, name).unreachable = unreachable

    def _kill_containers(self, namespace: str, name: str, codes: dict[str, int]) -> None:
        killed: list[str] = []

        def kill(pod: JSON) -> None:
            killed.extend(lifecycle.kill_all(pod, codes))

        pod = self.store.update(namespace, name, kill)
        for container in killed:
            self._container_stopped(namespace, name, container)
            path = f"spec.containers{{{container}}}"
            self.events.record(pod, "Killing", f"Stopping container {container}", field_path=path)

    def evict(self, namespace: str, name: str, remove: bool = True) -> None:
        """Scale-down eviction: DisruptionTarget + deletionTimestamp, containers killed, DELETED.

        ``remove=False`` stops before DELETED: the pod lingers with dead containers (exec answers 500).
        """
        pod = self._require(namespace, name)
        grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))

        def mark(p: JSON) -> None:
            lifecycle.disruption(p)
            lifecycle.mark_deleting(p, grace)

        self.store.update(namespace, name, mark)
        # PID 1 of the base container handles SIGTERM (143); the sidecar's sh ignores it: SIGKILL (137).
        self._kill_containers(namespace, name, {lifecycle.XCOM_SIDECAR: 137, "base": 143})
        if remove:
            self.store.remove(namespace, name)

    def force_delete(self, namespace: str, name: str) -> JSON | None:
        pod = self.store.get(namespace, name)
        if pod is None:
            return None
        self.store.update(namespace, name, lambda p: lifecycle.mark_deleting(p, 0))
        return self.store.remove(namespace, name)

    # --- API semantics ---------------------------------------------------------------------------
    def api_delete(self, namespace: str, name: str, grace: int | None) -> JSON:
        """Graceful delete as kube-apiserver + kubelet do it; returns the object the API answers with.

        Unscheduled pods and grace 0 go at once; otherwise the pod gets ``deletionTimestamp`` now and
        leaves the API after ``deletion_delay`` seconds (containers killed 143 first).
        """
        pod = self._require(namespace, name)
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        if grace == 0 or "nodeName" not in pod["spec"]:
            self.store.update(namespace, name, lambda p: lifecycle.mark_deleting(p, 0))
            removed = self.store.remove(namespace, name)
            assert removed is not None
            return removed
        if "deletionTimestamp" in pod["metadata"]:
            return pod
        marked = self.store.update(namespace, name, lambda p: lifecycle.mark_deleting(p, grace))
        uid = marked["metadata"]["uid"]

        def finish() -> None:
            current = self.store.get(namespace, name)
            if current is None or current["metadata"]["uid"] != uid:
                return
            codes = {c: 143 for c in lifecycle.container_names(current)}
            codes[lifecycle.XCOM_SIDECAR] = 137
            self._kill_containers(namespace, name, codes)
            self.store.remove(namespace, name)

        self.later(self.deletion_delay, finish)
        return marked
