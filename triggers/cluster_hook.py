"""The cluster connection a KPO subclass supplies, on the Airflow side: check it, and connect with it.

A subclass overrides ``FinalizationMixin.finalizer_cluster()`` to return a ``CredentialsRef``
(or its dict form): a ``finalizer.kube.credentials.CredentialsProvider`` import path and JSON
kwargs. ``credentials_ref`` checks that answer where the task defers (in the worker), so a broken
hook is one clear message there. In the triggerer the finalizer builds its shared client from the
provider, and the classic path (``KubernetesPodTrigger.run``, ``on_kill`` without a finalizer)
connects the same way through ``CredentialsKubernetesHook``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
from pydantic import ValidationError

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import ClusterRef, CredentialsRef
from finalizer.kube.credentials import build_provider, configuration_for


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "value"
    return f"{where}: {error.get('msg', 'invalid')}"


def describe_error(exc: BaseException) -> str:
    """For the task log: pydantic's own text repeats the input (a secret kwarg's value): not that."""
    if isinstance(exc, ValidationError):
        return f"invalid {exc.title} ({_first_error(exc)})"
    return f"{type(exc).__name__}: {exc}"


def credentials_ref(value: object, *, check_import: bool = True) -> CredentialsRef | None:
    """``finalizer_cluster()``'s answer as a ``CredentialsRef``; None keeps the trigger's connection.

    Raises ``ConfigurationError`` naming what is wrong: not a ref or dict, a bad import path,
    kwargs that are not plain JSON or look like secrets, or (``check_import``) a provider that
    cannot be imported or built here.
    """
    if value is None:
        return None
    if isinstance(value, CredentialsRef):
        ref = value
    elif isinstance(value, dict):
        try:
            ref = CredentialsRef.model_validate(value)
        except ValidationError as exc:
            raise ConfigurationError(
                f"finalizer_cluster() returned an invalid ref ({_first_error(exc)})"
            ) from None
    else:
        raise ConfigurationError(
            f"finalizer_cluster() returned {type(value).__name__}; expected a CredentialsRef, a dict or None"
        )
    if check_import:
        build_provider(ref)  # the class exists and takes these kwargs (credentials are not fetched)
    return ref


def cluster_ref_for(trigger: Any, credentials: CredentialsRef | None) -> ClusterRef:
    """The finalizer's ``ClusterRef`` of a pod or Job trigger: the subclass's provider alone when
    it has one (so tasks of one provider identity share a client), else the trigger's connection."""
    if credentials is not None:
        return ClusterRef(credentials=credentials)
    return ClusterRef(
        kubernetes_conn_id=trigger.kubernetes_conn_id,
        config_dict=trigger.config_dict,
        cluster_context=trigger.cluster_context,
        in_cluster=trigger.in_cluster,
    )


class CredentialsKubernetesHook(AsyncKubernetesHook):  # type: ignore[misc]
    """``AsyncKubernetesHook`` whose client comes from a ``CredentialsProvider`` (token refreshed).

    Upstream's GKE hook plays this part for ``GKEStartPodTrigger``; here one hook serves any provider.
    """

    def __init__(self, credentials: CredentialsRef, **kwargs: Any) -> None:
        super().__init__(conn_id=None, **kwargs)
        self.credentials = credentials

    async def _load_config(self) -> None:
        if getattr(self, "_config_loaded", False):
            return
        # The refresh hook on this configuration renews the token before it expires.
        self.client_configuration, _ = await configuration_for(self.credentials)
        self._is_in_cluster = False
        self._config_loaded = True
