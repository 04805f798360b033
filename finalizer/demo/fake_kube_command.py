"""``kpo-finalizer fake-kube``: serve the fake Kubernetes API in the foreground until Ctrl-C.

For trying kpo-finalizer without a cluster: point a triggerer and workers (``config_file=`` of the
operator, or ``KUBECONFIG``) at it. Its auto-kubelet schedules, runs and ends every pod created
through the API, scripted by the pod's ``fake-kube/*`` annotations (``annotations_help``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading


def annotations_help() -> str:
    """The pod annotations the fake cluster obeys, as plain text for ``--help``."""
    from finalizer.testing.fake_kube.kubelet import ANNOTATIONS, PREFIX

    width = max(len(PREFIX + key) for key in ANNOTATIONS)
    lines = [f"  {PREFIX + key:<{width}}  {meaning}" for key, meaning in ANNOTATIONS.items()]
    return (
        "Every pod created through the API is scheduled, started and ended by the fake kubelet,\n"
        "as its annotations (all optional) say:\n" + "\n".join(lines)
    )


def serve_fake_kube(kubeconfig_path: str | None, port: int = 0) -> int:
    """Serve on 127.0.0.1:``port`` (0: any free port) until SIGINT; 1 when the port is taken."""
    from finalizer.testing import FakeKube

    # Ctrl-C sets an event instead of raising: a SIGINT that lands before the wait loop (right
    # after the readiness lines) must stop the server just as cleanly as one that lands in it.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        with contextlib.ExitStack() as stack:
            try:
                kube = stack.enter_context(FakeKube.in_thread(port=port))
            except OSError as exc:
                print(f"fake-kube: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}", file=sys.stderr)
                return 1
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
