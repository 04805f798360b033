"""The only code that talks to Kubernetes (kubernetes_asyncio, unmodified).

``KubeClients`` holds one ``KubeCluster`` per ``ClusterRef``: one shared client, a
semaphore bounding its calls, the shared pod ``watcher`` (pods by name, a Job's pods by
owner), the shared batch/v1 ``job_watcher``, unary pod and Job operations and the
exec-based XCom reader. Everything raised is a ``finalizer.exceptions`` class.
"""

from finalizer.kube.batch_jobs import BatchJobOps, job_to_dict
from finalizer.kube.clients import KubeClients, KubeCluster, cluster_from_kubeconfig
from finalizer.kube.config import KubeSettings, load_configuration
from finalizer.kube.errors import error_for_status, kube_errors, translate
from finalizer.kube.members import MemberSubscription
from finalizer.kube.pods import ALREADY_CHECKED_LABEL, PodOps, termination_message
from finalizer.kube.subscription import JobSubscription
from finalizer.kube.watcher import JobWatcher, PodWatcher, Subscription
from finalizer.kube.xcom import ExecOps, XComResult

__all__ = [
    "ALREADY_CHECKED_LABEL",
    "BatchJobOps",
    "ExecOps",
    "JobSubscription",
    "JobWatcher",
    "KubeClients",
    "KubeCluster",
    "KubeSettings",
    "MemberSubscription",
    "PodOps",
    "PodWatcher",
    "Subscription",
    "XComResult",
    "cluster_from_kubeconfig",
    "error_for_status",
    "job_to_dict",
    "kube_errors",
    "load_configuration",
    "termination_message",
    "translate",
]
