"""``kpo-finalizer fake-kube``: serve the fake Kubernetes API in the foreground until Ctrl-C.

Handy to point ``kubectl``-free experiments or a hand-started triggerer at a cluster that speaks
the real wire protocol; the kubeconfig is printed (and optionally written) for clients.
"""

from __future__ import annotations

import json
import signal
import threading


def serve_fake_kube(kubeconfig_path: str | None) -> int:
    from finalizer.testing import FakeKube

    # Ctrl-C sets an event instead of raising: a SIGINT that lands before the wait loop (right
    # after the readiness lines) must stop the server just as cleanly as one that lands in it.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        with FakeKube.in_thread() as kube:
            kube.auto_kubelet(True)
            print(f"fake Kubernetes API at {kube.url} (auto-kubelet on); Ctrl-C stops it", flush=True)
            if kubeconfig_path:
                print(f"kubeconfig written to {kube.write_kubeconfig(kubeconfig_path)}", flush=True)
            else:
                print(json.dumps(kube.kubeconfig, indent=2), flush=True)
            while not stop.wait(3600):
                pass
            print("stopping", flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0
