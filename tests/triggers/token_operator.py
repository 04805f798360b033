"""A KPO subclass that connects through a token service instead of a kubeconfig (GKE/EKS-like)."""

from __future__ import annotations

from typing import Any

from finalizer.jobs import CredentialsRef
from finalizer.testing.token_issuer import PROVIDER
from triggers.operator import FinalizingKubernetesPodOperator


class TokenPodOperator(FinalizingKubernetesPodOperator):
    """``finalizer_cluster()`` names the token service and the cluster, never a token."""

    def __init__(self, *, issuer_url: str, cluster_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issuer_url = issuer_url
        self.cluster_url = cluster_url

    def finalizer_cluster(self) -> CredentialsRef:
        return CredentialsRef(
            provider=PROVIDER, kwargs={"issuer_url": self.issuer_url, "cluster_url": self.cluster_url}
        )
