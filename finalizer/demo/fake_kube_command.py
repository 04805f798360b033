"""``kpo-finalizer fake-kube``: serve the fake Kubernetes API in the foreground until Ctrl-C.

Handy to point ``kubectl``-free experiments or a hand-started triggerer at a cluster that speaks
the real wire protocol; the kubeconfig is printed (and optionally written) for clients.
"""

from __future__ import annotations

import json
import threading


def serve_fake_kube(kubeconfig_path: str | None) -> int:
    from finalizer.testing import FakeKube

    with FakeKube.in_thread() as kube:
        kube.auto_kubelet(True)
        print(f"fake Kubernetes API at {kube.url} (auto-kubelet on); Ctrl-C stops it")
        if kubeconfig_path:
            print(f"kubeconfig written to {kube.write_kubeconfig(kubeconfig_path)}")
        else:
            print(json.dumps(kube.kubeconfig, indent=2))
        stop = threading.Event()
        try:
            while not stop.wait(3600):
                pass
        except KeyboardInterrupt:
            print("stopping")
    return 0
