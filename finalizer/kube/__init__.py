"""The only code that talks to Kubernetes (kubernetes_asyncio, unmodified).

``KubeClients`` holds one ``KubeCluster`` per ``ClusterRef``: one shared client, a
semaphore bounding its calls, the shared pod ``watcher``, unary pod operations and the
exec-based XCom reader. Everything raised is a ``finalizer.exceptions`` class.
"""

from finalizer.kube.clients import KubeClients, KubeCluster, cluster_from_kubeconfig
from finalizer.kube.config import KubeSettings, load_configuration
from finalizer.kube.errors import error_for_status, kube_errors, translate
from finalizer.kube.pods import ALREADY_CHECKED_LABEL, PodOps, termination_message
from finalizer.kube.watcher import PodWatcher, Subscription
from finalizer.kube.xcom import ExecOps, XComResult

__all__ = [
    "ALREADY_CHECKED_LABEL",
    "ExecOps",
    "KubeClients",
    "KubeCluster",
    "KubeSettings",
    "PodOps",
    "PodWatcher",
    "Subscription",
    "XComResult",
    "cluster_from_kubeconfig",
    "error_for_status",
    "kube_errors",
    "load_configuration",
    "termination_message",
    "translate",
]
