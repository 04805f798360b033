"""An optional automatic scheduler + kubelet for pods created through the API.

Lets the upstream ``KubernetesPodOperator`` on a worker and the demo run unattended: a pod created
over HTTP is scheduled and started after ``start_delay``, runs ``fake-kube/run-seconds``, writes
``fake-kube/xcom`` into the XCom volume and ends its first container with ``fake-kube/exit-code``.
Its annotations, all optional, are ``ANNOTATIONS`` (``kpo-finalizer fake-kube --help`` lists them).
"""

from __future__ import annotations

from dataclasses import dataclass

from finalizer.testing.fake_kube import lifecycle
from finalizer.testing.fake_kube.cluster import Cluster

PREFIX = "fake-kube/"
#: Every annotation the auto-kubelet reads (key after ``PREFIX``) and what it does.
ANNOTATIONS: dict[str, str] = {
    "run-seconds": "seconds the base container runs (default 0.2)",
    "exit-code": "the base container's exit code (default 0)",
    "xcom": "content of /airflow/xcom/return.json, written before the container ends",
    "termination-message": "the base container's termination message",
    "logs": "the base container's log, one line per line",
    "image-pull": "ErrImagePull, ImagePullBackOff or InvalidImageName: the image never pulls",
    "unschedulable": "a scheduler message: the pod stays Pending, unschedulable",
}


@dataclass(slots=True)
class AutoKubelet:
    cluster: Cluster
    enabled: bool = False
    start_delay: float = 0.05
    run_seconds: float = 0.2
    node: str = "node-1"

    def on_api_create(self, namespace: str, name: str) -> None:
        if not self.enabled:
            return
        pod = self.cluster.store.get(namespace, name)
        if pod is None:
            return
        notes = {
            k[len(PREFIX) :]: str(v)
            for k, v in ((pod["metadata"].get("annotations") or {}).items())
            if k.startswith(PREFIX)
        }
        uid = pod["metadata"]["uid"]
        self.cluster.later(self.start_delay, lambda: self._begin(namespace, name, uid, notes))

    def _alive(self, namespace: str, name: str, uid: str) -> bool:
        pod = self.cluster.store.get(namespace, name)
        return (
            pod is not None and pod["metadata"]["uid"] == uid and "deletionTimestamp" not in pod["metadata"]
        )

    def _begin(self, namespace: str, name: str, uid: str, notes: dict[str, str]) -> None:
        if not self._alive(namespace, name, uid):
            return
        if "unschedulable" in notes:
            self.cluster.unschedulable(namespace, name, notes["unschedulable"] or None)
            return
        pod = self.cluster.store.get(namespace, name) or {}
        base = lifecycle.container_names(pod)[0]
        self.cluster.schedule(namespace, name, self.node)
        if "image-pull" in notes:
            self.cluster.image_pull_failure(
                namespace, name, base, notes["image-pull"] or "ErrImagePull", None
            )
            return
        self.cluster.start(namespace, name)
        if "logs" in notes:
            self.cluster.set_logs(namespace, name, base, notes["logs"].splitlines())
        run = float(notes.get("run-seconds", self.run_seconds))
        self.cluster.later(run, lambda: self._finish(namespace, name, uid, base, notes))

    def _finish(self, namespace: str, name: str, uid: str, base: str, notes: dict[str, str]) -> None:
        if not self._alive(namespace, name, uid):
            return
        if "xcom" in notes:
            self.cluster.write_file(namespace, name, lifecycle.XCOM_FILE, notes["xcom"].encode())
        self.cluster.terminate(
            namespace, name, base, int(notes.get("exit-code", "0")), notes.get("termination-message"), None
        )
