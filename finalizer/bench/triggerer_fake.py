"""The fake Kubernetes API for ``bench triggerer``, in a process of its own, driven over a pipe.

Its own process (as in ``bench finalize``) for two reasons: its CPU is then a figure of its own
(psutil on its pid), and it does not share a GIL with the bench's sampler. The child keeps the
request log; the bench asks for counts over a time window (``time.time()``, the log's clock).

The burst runs inside the child, on a thread of its own: each pod's ``return.json`` is written,
then its base container ends, at evenly spaced times over the window, and the time of each end
is kept (``time.time()`` after the change is in the store, so the watch can already see it).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections import Counter
from contextlib import suppress
from typing import Any

from finalizer.loops import loop_factory
from finalizer.testing.fake_kube import FakeKube


def xcom_content(index: int, size: int) -> str:
    """A JSON document of exactly ``size`` bytes (at least its skeleton's) naming ``index``."""
    skeleton = json.dumps({"i": index, "pad": ""})
    return json.dumps({"i": index, "pad": "x" * max(0, size - len(skeleton))})


class FakeKubeProcess:
    """Start with ``with FakeKubeProcess() as kube``; ``kube.call(op, *args)`` runs ``op`` in the child."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._lock = threading.Lock()  # the sampler thread and the main thread share the pipe
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="bench-fake-kube")
        self.kubeconfig: dict[str, Any] = {}

    def __enter__(self) -> FakeKubeProcess:
        self._proc.start()
        self.kubeconfig = self.call("kubeconfig")
        return self

    def __exit__(self, *exc: object) -> None:
        with suppress(OSError), self._lock:
            self._conn.send(("stop", ()))
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()

    @property
    def pid(self) -> int:
        if self._proc.pid is None:
            raise RuntimeError("the fake API process is not started")
        return self._proc.pid

    def call(self, op: str, *args: Any) -> Any:
        with self._lock:
            self._conn.send((op, args))
            ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"fake-kube child failed on {op}: {value}")
        return value


def _serve(conn: Any) -> None:
    """Child: a FakeKube on its own loop thread; answer commands until told to stop."""
    with FakeKube.in_thread(bookmark_interval=5.0, loop_factory=loop_factory("auto")) as kube:
        ops = _Ops(kube)
        while True:
            op, args = conn.recv()
            if op == "stop":
                return
            try:
                conn.send((True, getattr(ops, op)(*args)))
            except Exception as exc:
                conn.send((False, repr(exc)))


class _Ops:
    """What the bench can ask of the child (each returns plain, picklable values)."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.ended: dict[str, dict[str, float]] = {}  # namespace -> pod name -> time.time()
        self._bursts: dict[str, threading.Thread] = {}

    def kubeconfig(self) -> dict[str, Any]:
        return self.kube.kubeconfig

    def create_running(self, namespace: str, pods: list[tuple[str, dict[str, str]]]) -> dict[str, str]:
        """Create and start each (name, labels); return name -> uid."""
        uids = {}
        for name, labels in pods:
            pod = self.kube.create_pod(namespace, name=name, labels=labels)
            self.kube.start(namespace, name)
            uids[name] = str(pod["metadata"]["uid"])
        return uids

    def burst(self, namespace: str, names: list[str], window: float, xcom_bytes: int) -> None:
        """Start ending every pod's base container within ``window`` seconds (returns at once)."""
        ended = self.ended.setdefault(namespace, {})

        def run() -> None:
            start = time.monotonic()
            step = window / max(1, len(names) - 1) if len(names) > 1 else 0.0
            for i, name in enumerate(names):
                delay = start + i * step - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.kube.write_xcom(namespace, name, xcom_content(i, xcom_bytes))
                self.kube.terminate(namespace, name, "base", 0)
                ended[name] = time.time()

        thread = threading.Thread(target=run, name=f"burst-{namespace}", daemon=True)
        self._bursts[namespace] = thread
        thread.start()

    def burst_ended(self, namespace: str) -> tuple[bool, dict[str, float]]:
        """(whether the burst thread is done, name -> base container end time)."""
        thread = self._bursts.get(namespace)
        return (thread is None or not thread.is_alive()), dict(self.ended.get(namespace, {}))

    def pods_left(self, namespace: str) -> list[str]:
        return [str(p["metadata"]["name"]) for p in self.kube.list_pods(namespace)]

    def requests(self, namespace: str, since: float, until: float) -> dict[str, int]:
        """Requests on ``namespace`` that arrived within [since, until), by verb."""
        counts: Counter[str] = Counter(
            r.verb for r in self.kube.requests if r.namespace == namespace and since <= r.time < until
        )
        return dict(counts)
