"""Cluster connections that a KPO subclass supplies (GKE, EKS): the provider hook and its refresh.

A ``CredentialsRef`` (``finalizer.jobs``) names a ``CredentialsProvider`` subclass by import path
plus JSON kwargs; that is all that is serialised to the triggerer and stored in the ledger. In the
triggerer the provider is built once per cluster identity and asked for ``ClusterCredentials``
(host, CA, bearer token and its expiry); ``CredentialsSource`` asks again before the token
expires, for the shared client of the finalizer and for the classic path's hook alike.

A provider runs on an event loop: blocking work (a sync SDK refreshing a token) belongs in
``asyncio.to_thread``.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import datetime
import hashlib
import importlib
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s_client

from finalizer.exceptions import ConfigurationError, KubeTransientError
from finalizer.jobs import CredentialsRef

log = logging.getLogger(__name__)

#: Refresh this long before the token expires (at most half its remaining life).
REFRESH_MARGIN_SECONDS = 60.0
#: After a failed refresh while the token still works, ask again this soon.
RETRY_AFTER_FAILED_REFRESH = 10.0


@dataclass(frozen=True, slots=True)
class ClusterCredentials:
    """What a provider returns. ``token`` is a secret: it is never shown by ``repr``."""

    #: The API server, e.g. ``https://10.0.0.1`` (GKE's endpoint, EKS's cluster endpoint).
    host: str
    #: Bearer token sent as ``Authorization: Bearer <token>``.
    token: str = field(repr=False)
    #: When the token stops working (aware datetime); None: it does not expire.
    expires_at: datetime.datetime | None = None
    #: The cluster's CA, PEM text or base64 of it (GKE's ``cluster_ca_certificate``); None: system CAs.
    ca_cert: str | None = field(default=None, repr=False)
    verify_ssl: bool = True

    def seconds_left(self, now: datetime.datetime | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return (self.expires_at - (now or datetime.datetime.now(datetime.UTC))).total_seconds()


class CredentialsProvider(abc.ABC):
    """Subclass this, importable where the triggerer runs; ``__init__`` takes the ref's kwargs.

    ``credentials`` is called on first use of the cluster and again before each token expires.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    @abc.abstractmethod
    async def credentials(self) -> ClusterCredentials:
        """Fresh credentials for the cluster (fetch or mint a token now)."""


def describe_provider(ref: CredentialsRef) -> str:
    """Names the provider and its kwargs' keys for messages (the values stay out of logs)."""
    keys = ", ".join(sorted(ref.kwargs)) or "no kwargs"
    return f"credentials provider {ref.provider} ({keys})"


def build_provider(ref: CredentialsRef) -> CredentialsProvider:
    """Import and construct the provider; every failure is one ``ConfigurationError`` naming it."""
    module_name, _, class_name = ref.provider.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot import {describe_provider(ref)}: {type(exc).__name__}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, CredentialsProvider)):
        raise ConfigurationError(
            f"{describe_provider(ref)}: {ref.provider} is not a "
            "finalizer.kube.credentials.CredentialsProvider subclass"
        )
    try:
        return cls(**ref.kwargs)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot construct {describe_provider(ref)}: {type(exc).__name__}: {exc}"
        ) from exc


def check_credentials(value: object, ref: CredentialsRef) -> ClusterCredentials:
    """A provider's answer, checked: the wrong type, no host or no token is a clear error."""
    what = describe_provider(ref)
    if not isinstance(value, ClusterCredentials):
        raise ConfigurationError(f"{what} returned {type(value).__name__}, not ClusterCredentials")
    if not value.host.startswith(("https://", "http://")):
        raise ConfigurationError(f"{what} returned host {value.host!r}: it must start with https://")
    if not value.token or any(c in value.token for c in "\r\n"):
        raise ConfigurationError(f"{what} returned an empty or multi-line token")
    if value.expires_at is not None and value.expires_at.tzinfo is None:
        raise ConfigurationError(f"{what} returned a naive expires_at; give it a timezone")
    return value


def _ca_bytes(ca_cert: str) -> bytes:
    """PEM as given, or base64 of PEM (what GKE's API returns)."""
    text = ca_cert.strip()
    if text.startswith("-----BEGIN"):
        return (text + "\n").encode()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("ca_cert is neither PEM nor base64 of PEM") from exc
    if not decoded.lstrip().startswith(b"-----BEGIN"):
        raise ConfigurationError("ca_cert is neither PEM nor base64 of PEM")
    return decoded.strip() + b"\n"


_CA_DIR: Path | None = None


def ca_file(ca_cert: str) -> str:
    """A file holding the CA (the client takes a path), one per content, reused across calls.

    In a directory of this process only (mode 0700): nobody else can put a CA of theirs there.
    """
    global _CA_DIR
    data = _ca_bytes(ca_cert)
    if _CA_DIR is None:
        _CA_DIR = Path(tempfile.mkdtemp(prefix="kpo-finalizer-ca-"))
    path = _CA_DIR / f"{hashlib.sha256(data).hexdigest()[:16]}.pem"
    if not path.exists():
        tmp = path.with_suffix(f".{time.monotonic_ns()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return str(path)


def apply_credentials(cfg: k8s_client.Configuration, creds: ClusterCredentials) -> None:
    """Point ``cfg`` at the cluster with the bearer token (kubernetes_asyncio's ``BearerToken``)."""
    cfg.host = creds.host.rstrip("/")
    cfg.verify_ssl = creds.verify_ssl
    cfg.ssl_ca_cert = ca_file(creds.ca_cert) if creds.ca_cert else None
    set_token(cfg, creds.token)


def set_token(cfg: k8s_client.Configuration, token: str) -> None:
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}


class CredentialsSource:
    """One provider for one cluster identity, and its current credentials, refreshed in time.

    Refresh starts ``REFRESH_MARGIN_SECONDS`` (at most half the token's remaining life) before
    expiry. Until then requests use the current token; one refresh runs at a time. A failed
    refresh keeps a token that still works (warning, next try in ``RETRY_AFTER_FAILED_REFRESH``);
    with no working token left, the request fails with ``KubeTransientError`` (retried).
    """

    def __init__(self, ref: CredentialsRef, *, margin: float = REFRESH_MARGIN_SECONDS) -> None:
        self.ref = ref
        self._provider = build_provider(ref)
        self._margin = margin
        self._current: ClusterCredentials | None = None
        self._refresh_at = 0.0  # monotonic
        self._expires_at = float("inf")  # monotonic
        self._inflight: asyncio.Future[ClusterCredentials] | None = None
        #: Provider calls so far (tests and the status of a cluster).
        self.fetches = 0

    async def first(self) -> ClusterCredentials:
        """The first credentials: any failure is a ``ConfigurationError`` (nothing works yet)."""
        try:
            return await self._fetch()
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"{describe_provider(self.ref)} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _fetch(self) -> ClusterCredentials:
        self.fetches += 1
        creds = check_credentials(await self._provider.credentials(), self.ref)
        now = time.monotonic()
        left = creds.seconds_left()
        if left is None:
            self._refresh_at = self._expires_at = float("inf")
        else:
            self._expires_at = now + left
            self._refresh_at = now + max(0.0, left - min(self._margin, left / 2))
        self._current = creds
        return creds

    async def current(self) -> ClusterCredentials:
        """Credentials fit for a request now (refreshing first when due)."""
        now = time.monotonic()
        current = self._current
        if current is not None and now < min(self._refresh_at, self._expires_at):
            return current
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._settled)
        inflight = self._inflight
        if current is not None and now < self._expires_at and not inflight.done():
            # Still valid: let this request go with it; the refresh finishes in the background.
            return current
        try:
            return await asyncio.shield(inflight)
        except Exception as exc:
            if current is not None and time.monotonic() < self._expires_at:
                return current
            raise KubeTransientError(
                f"no valid token for the cluster: {describe_provider(self.ref)} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _settled(self, future: asyncio.Future[ClusterCredentials]) -> None:
        self._inflight = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._refresh_at = time.monotonic() + RETRY_AFTER_FAILED_REFRESH
            log.warning(
                "could not refresh Kubernetes credentials (%s): %s: %s",
                describe_provider(self.ref),
                type(exc).__name__,
                exc,
            )

    def install(self, cfg: k8s_client.Configuration) -> None:
        """Refresh ``cfg``'s token before each request that needs it (the client calls the hook)."""

        async def refresh(target: k8s_client.Configuration) -> None:
            creds = await self.current()
            if target.api_key.get("BearerToken") != creds.token:
                set_token(target, creds.token)

        cfg.refresh_api_key_hook = refresh


async def configuration_for(ref: CredentialsRef) -> tuple[k8s_client.Configuration, CredentialsSource]:
    """A client Configuration from the provider, with its refresh installed."""
    source = CredentialsSource(ref)
    creds = await source.first()
    cfg = k8s_client.Configuration()
    apply_credentials(cfg, creds)
    source.install(cfg)
    return cfg, source
