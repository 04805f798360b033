"""Settings of the Kubernetes layer, and turning a ``ClusterRef`` into a client Configuration.

A ``ClusterRef`` holds exactly what ``KubernetesPodTrigger`` takes. With a
``kubernetes_conn_id`` and Airflow installed, the provider's own ``AsyncKubernetesHook``
reads the connection (extras, ``kube_config``, ``kube_config_path``, ``in_cluster``), so
a connection that works for the KPO works here. Without Airflow we load ``config_dict``,
in-cluster or the default kubeconfig with kubernetes_asyncio directly. A ``credentials`` ref (a
KPO subclass's own connection: GKE, EKS) goes to its provider (``finalizer.kube.credentials``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from api_client.backoff import RetryPolicy
from finalizer.exceptions import ConfigurationError
from finalizer.jobs import ClusterRef
from finalizer.kube.credentials import configuration_for, describe_provider

log = logging.getLogger(__name__)

#: After a failed credential refresh, try again this soon (the current token keeps serving).
FAILED_REFRESH_RETRY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """Bounds for every call the layer makes (kubernetes_asyncio sets none)."""

    connect_timeout: float = 10.0
    #: Socket read timeout of unary calls (GET, DELETE, PATCH, LIST, logs).
    read_timeout: float = 60.0
    #: Unary calls and exec sessions in flight per cluster.
    max_concurrency: int = 32
    #: Server-side ``timeoutSeconds`` of one WATCH request (jittered by up to +50%).
    watch_timeout_seconds: int = 300
    #: A watch silent this much longer than its ``timeoutSeconds`` is stalled (half-open TCP).
    watch_stall_margin: float = 30.0
    #: Re-LIST this often even when the watch looks healthy: a safety net, not the mechanism.
    resync_seconds: float = 1800.0
    #: Page size of LIST calls (0 = no paging).
    list_page_size: int = 500
    #: Reconnect backoff of a broken watch; never gives up while pods are subscribed.
    watch_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            max_attempts=1_000_000, base_delay=0.5, max_delay=30.0, deadline=None
        )
    )
    #: Retries of the GET that resolves a late subscriber's pod.
    resolve_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=6, deadline=120.0))
    #: Overall limit of one exec session (exec ignores ``_request_timeout``).
    exec_timeout: float = 60.0
    #: Log streams open at once per cluster (a followed pod holds one while it runs); more wait.
    max_log_streams: int = 32
    #: Socket read timeout of a log stream that follows a running container (it may be quiet for
    #: minutes; on timeout the stream is reopened where it stopped).
    log_follow_read_timeout: float = 300.0
    #: Limit of the sidecar stop: a stop that hangs is only worth a warning.
    sidecar_stop_timeout: float = 15.0
    #: Re-load exec-plugin credentials (EKS, GKE) at most this often.
    credential_refresh_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.watch_timeout_seconds < 1:
            raise ConfigurationError(f"watch_timeout_seconds must be >= 1, got {self.watch_timeout_seconds}")
        if min(self.connect_timeout, self.read_timeout, self.exec_timeout) <= 0:
            raise ConfigurationError("timeouts must be positive")

    @property
    def request_timeout(self) -> tuple[float, float]:
        """The ``(connect, read)`` form: a scalar would be a total limit."""
        return (self.connect_timeout, self.read_timeout)

    @property
    def pool_size(self) -> int:
        """aiohttp connections: the unary slots, the log streams, headroom for long-lived watches."""
        return self.max_concurrency + self.max_log_streams + 64


def _uses_exec_auth(kubeconfig: dict[str, Any], context: str | None) -> bool:
    """Whether the active context's user gets short-lived tokens from an exec plugin."""
    active = context or kubeconfig.get("current-context")
    user_name = next(
        (
            (c.get("context") or {}).get("user")
            for c in kubeconfig.get("contexts") or []
            if c.get("name") == active
        ),
        None,
    )
    for user in kubeconfig.get("users") or []:
        if (user_name is None or user.get("name") == user_name) and "exec" in (user.get("user") or {}):
            return True
    return False


async def _load_via_airflow(cluster: ClusterRef, cfg: k8s_client.Configuration) -> bool:
    """Load through the provider's hook; returns whether credentials are short-lived."""
    try:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
    except ImportError as exc:
        raise ConfigurationError(
            f"kubernetes_conn_id={cluster.kubernetes_conn_id!r} needs "
            "apache-airflow-providers-cncf-kubernetes"
        ) from exc
    hook = AsyncKubernetesHook(
        conn_id=cluster.kubernetes_conn_id,
        in_cluster=cluster.in_cluster,
        config_dict=cluster.config_dict,
        cluster_context=cluster.cluster_context,
        client_configuration=cfg,
    )
    # The hook's loader is the one place that knows every connection-extra spelling.
    await hook._load_config()
    return bool(getattr(hook, "_is_exec_auth", False))


def describe_cluster(cluster: ClusterRef) -> str:
    """Name a cluster for messages without its secrets.

    ``repr(cluster)`` shows ``config_dict`` whole, bearer tokens and client keys included, and error
    messages end up in logs: only the source and its non-secret coordinates are named here.
    """
    if cluster.credentials is not None:
        source = describe_provider(cluster.credentials)
    elif cluster.kubernetes_conn_id:
        source = f"kubernetes_conn_id={cluster.kubernetes_conn_id!r}"
    elif cluster.config_dict:
        source = f"config_dict (key {cluster.key})"
    elif cluster.in_cluster:
        source = "in-cluster configuration"
    else:
        source = "the default kubeconfig"
    context = f", context {cluster.cluster_context!r}" if cluster.cluster_context else ""
    return source + context


async def load_configuration(cluster: ClusterRef) -> tuple[k8s_client.Configuration, bool]:
    """A fresh client Configuration for ``cluster`` and whether its token must be refreshed."""
    cfg = k8s_client.Configuration()
    try:
        if cluster.credentials is not None:
            # The provider's own refresh is installed: nothing for the exec-plugin path to redo.
            cfg, _ = await configuration_for(cluster.credentials)
            return cfg, False
        if cluster.kubernetes_conn_id:
            return cfg, await _load_via_airflow(cluster, cfg)
        if cluster.config_dict:
            await k8s_config.load_kube_config_from_dict(
                cluster.config_dict, context=cluster.cluster_context, client_configuration=cfg
            )
            return cfg, _uses_exec_auth(cluster.config_dict, cluster.cluster_context)
        if cluster.in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)
            return cfg, False
        await k8s_config.load_kube_config(context=cluster.cluster_context, client_configuration=cfg)
        return cfg, True  # an unknown file may use exec auth: refresh to be safe
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"cannot load Kubernetes configuration from {describe_cluster(cluster)}: {exc}"
        ) from exc


def install_credential_refresh(
    cfg: k8s_client.Configuration, cluster: ClusterRef, min_interval: float
) -> None:
    """Re-run the loader for short-lived (exec plugin) tokens, at most every ``min_interval`` s.

    kubernetes_asyncio calls ``refresh_api_key_hook`` before every request; we copy only the
    fresh credentials, so the shared client (and its SSL context) stays.
    """
    last = time.monotonic()

    async def refresh(target: k8s_client.Configuration) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < min_interval:
            return
        last = now  # before the await: concurrent requests do not all run the plugin
        try:
            fresh, _ = await load_configuration(cluster)
        except ConfigurationError as exc:
            # Refreshes run long before the token expires, so the current one most likely still
            # works: keep it and try again soon, rather than fail this request for good.
            last = now - min_interval + min(min_interval, FAILED_REFRESH_RETRY_SECONDS)
            log.warning("could not refresh Kubernetes credentials, keeping the current ones: %s", exc)
            return
        target.api_key = dict(fresh.api_key)
        target.api_key_prefix = dict(fresh.api_key_prefix)

    cfg.refresh_api_key_hook = refresh
