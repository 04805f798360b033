"""A KPO subclass's own cluster connection at the kube layer: provider → shared client → refresh.

The fake API server accepts only live tokens of a ``TokenIssuer`` (GKE/EKS-like short-lived
bearer tokens); the client gets them from ``IssuedTokenCredentials`` named by a ``CredentialsRef``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s_client

from finalizer.exceptions import ConfigurationError, KubeRequestError, KubeTransientError
from finalizer.jobs import ClusterRef, CredentialsRef, PodRef
from finalizer.kube import KubeClients
from finalizer.kube.config import describe_cluster, load_configuration
from finalizer.kube.credentials import ClusterCredentials, CredentialsSource, apply_credentials
from finalizer.testing import FakeKube
from finalizer.testing.token_issuer import PROVIDER, TokenIssuer
from tests.kube import credential_providers as bad
from tests.support.kube import FAST, NS, running_pod
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

TTL = 1.0


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.in_thread(ttl=TTL) as token_issuer:
        yield token_issuer


@pytest.fixture
async def guarded(issuer: TokenIssuer) -> AsyncIterator[FakeKube]:
    """A cluster that answers 401 to anything but a live token of ``issuer``."""
    async with FakeKube(bookmark_interval=0.2, authorize=issuer.authorize) as kube:
        yield kube


def ref_for(issuer: TokenIssuer, kube: FakeKube, **extra: str) -> ClusterRef:
    return ClusterRef(
        credentials=CredentialsRef(provider=PROVIDER, kwargs=issuer.provider_kwargs(kube.url) | extra)
    )


async def test_the_providers_token_reaches_the_cluster_and_is_refreshed_before_it_expires(
    issuer: TokenIssuer, guarded: FakeKube
) -> None:
    uid = running_pod(guarded, "p")
    pod = PodRef(namespace=NS, name="p", uid=uid)
    guarded.write_xcom(NS, "p", '{"ok": true}')
    async with KubeClients(FAST) as clients:
        cluster = await clients.get(ref_for(issuer, guarded))
        async with cluster.watch(pod) as sub:
            await sub.wait(lambda p: True, timeout=10)
            # Steady traffic across three token lifetimes: every call goes out with a live token.
            started = time.monotonic()
            while time.monotonic() - started < 3 * TTL:
                assert (await cluster.read_pod(pod)).uid == uid
                await asyncio.sleep(0.05)
            # The watch opened with the first token still delivers; exec and delete use fresh ones.
            guarded.terminate(NS, "p", exit_code=0)
            ended = await sub.wait(
                lambda p: p.container("base") is not None and p.container("base").state == "terminated",
                timeout=10,
            )  # type: ignore[union-attr]
            assert ended is not None
            async with cluster.sidecar(pod) as sidecar:
                assert await sidecar.read_xcom(1024) == (True, {"ok": True})
            assert await cluster.delete_pod(pod, 0) is True
    assert issuer.rejected == 0
    assert issuer.issued >= 4  # the first token and at least one refresh per lifetime


async def test_without_refresh_the_cluster_refuses_the_expired_token(
    issuer: TokenIssuer, guarded: FakeKube
) -> None:
    """The fake's check is real: the first token alone stops working after its TTL."""
    running_pod(guarded, "p")
    cfg = k8s_client.Configuration()
    token, _ = issuer.mint()
    apply_credentials(cfg, ClusterCredentials(host=guarded.url, token=token))
    from finalizer.kube import KubeCluster

    cluster = KubeCluster(cfg, FAST)
    try:
        await cluster.pods.read_pod(NS, "p")
        await eventually(lambda: not issuer.authorize(f"Bearer {token}"), what="the first token to expire")
        with pytest.raises(KubeRequestError, match="401"):
            await cluster.pods.read_pod(NS, "p")
    finally:
        await cluster.aclose()


async def test_a_token_service_outage_keeps_the_live_token_then_fails_transiently(
    issuer: TokenIssuer, guarded: FakeKube
) -> None:
    running_pod(guarded, "p")
    async with KubeClients(FAST) as clients:
        cluster = await clients.get(ref_for(issuer, guarded))
        await cluster.pods.read_pod(NS, "p")
        issuer.failing = True
        issued = issuer.issued
        # Past the refresh point (half the TTL) the live token still serves; the failed refresh only warns.
        await asyncio.sleep(TTL * 0.6)
        await cluster.pods.read_pod(NS, "p")
        await asyncio.sleep(TTL * 0.5)  # now the token has expired and no new one can be had
        with pytest.raises(KubeTransientError, match="no valid token for the cluster") as info:
            await cluster.pods.read_pod(NS, "p")
        assert PROVIDER in str(info.value)
        issuer.failing = False
        await cluster.pods.read_pod(NS, "p")  # back: the next request fetched a token at once
        assert issuer.issued == issued + 1


async def test_clusters_are_shared_per_provider_and_kwargs(issuer: TokenIssuer, guarded: FakeKube) -> None:
    pods = [PodRef(namespace=NS, name=name, uid=running_pod(guarded, name)) for name in ("p1", "p2", "p3")]

    def watches() -> int:
        """Shared watch streams started: each begins with one LIST of the namespace."""
        return sum(1 for r in guarded.requests if r.verb == "list" and r.resource == "pods")

    async with KubeClients(FAST) as clients:
        a = await clients.get(ref_for(issuer, guarded))
        again = await clients.get(ref_for(issuer, guarded))
        other = await clients.get(ref_for(issuer, guarded, audience="team-b"))
        assert a is again
        assert other is not a
        assert len(clients) == 2
        # Two tasks of one identity: one watch of the namespace; another identity: its own.
        async with a.watch(pods[0]) as s1, again.watch(pods[1]) as s2:
            for sub in (s1, s2):
                await sub.wait(lambda p: True, timeout=10)
            assert watches() == 1
            async with other.watch(pods[2]) as s3:
                await s3.wait(lambda p: True, timeout=10)
                assert watches() == 2
    assert ref_for(issuer, guarded).key == ref_for(issuer, guarded).key
    assert ref_for(issuer, guarded).key != ref_for(issuer, guarded, audience="team-b").key


def test_a_cluster_without_credentials_keeps_its_key_and_json() -> None:
    """Jobs already in a ledger keep their cluster key; an older release reads new rows back."""
    ref = ClusterRef(kubernetes_conn_id="k8s", cluster_context="c")
    before = {"kubernetes_conn_id": "k8s", "config_dict": None, "cluster_context": "c", "in_cluster": None}
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert ref.key == expected
    assert json.loads(ref.model_dump_json()) == before
    with_provider = ClusterRef(
        credentials=CredentialsRef(provider=PROVIDER, kwargs={"cluster_url": "https://c"})
    )
    assert ClusterRef.model_validate_json(with_provider.model_dump_json()) == with_provider


@pytest.mark.parametrize(
    ("provider", "kwargs", "message"),
    [
        (
            "tests.kube.no_such_module.Provider",
            {},
            "cannot import credentials provider tests.kube.no_such_module",
        ),
        (f"{bad.HERE}.Missing", {}, "is not a finalizer.kube.credentials.CredentialsProvider subclass"),
        (bad.NOT_A_PROVIDER, {}, "is not a finalizer.kube.credentials.CredentialsProvider subclass"),
        (f"{bad.HERE}.NoKwargs", {"region": "eu"}, "cannot construct credentials provider"),
        (f"{bad.HERE}.Raising", {}, "failed: RuntimeError: metadata server unreachable"),
        (f"{bad.HERE}.Garbage", {}, "returned dict, not ClusterCredentials"),
        (f"{bad.HERE}.EmptyToken", {}, "returned an empty or multi-line token"),
        (f"{bad.HERE}.BadHost", {}, "returned host '10.0.0.1': it must start with https://"),
        (f"{bad.HERE}.NaiveExpiry", {}, "returned a naive expires_at"),
    ],
)
async def test_a_bad_provider_is_one_clear_configuration_error(
    provider: str, kwargs: dict[str, str], message: str
) -> None:
    ref = ClusterRef(credentials=CredentialsRef(provider=provider, kwargs=kwargs))
    with pytest.raises(ConfigurationError) as info:
        await load_configuration(ref)
    text = str(info.value)
    assert message in text
    assert provider in text
    assert "sekrit" not in text
    async with KubeClients(FAST) as clients:  # the pool says the same, and retries on the next call
        with pytest.raises(ConfigurationError, match="credentials provider"):
            await clients.get(ref)
        assert len(clients) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_token": "x"}, "look like secrets"),
        ({"Password": "x"}, "look like secrets"),
        ({"client_secret": "x"}, "look like secrets"),
        ({"when": datetime.datetime(2026, 1, 1)}, "must be plain JSON"),
        ({"ratio": float("nan")}, "must be plain JSON"),
    ],
)
def test_credentials_kwargs_are_plain_json_without_secrets(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CredentialsRef(provider="pkg.mod.Provider", kwargs=kwargs)


@pytest.mark.parametrize("provider", ["Provider", "pkg.", "pkg..Provider", "1pkg.Provider", "pkg.Pro vider"])
def test_the_provider_is_an_import_path(provider: str) -> None:
    with pytest.raises(ValueError, match="provider"):
        CredentialsRef(provider=provider)


async def test_the_token_is_never_in_the_ref_the_messages_or_the_repr(guarded: FakeKube) -> None:
    bad.Static.TOKENS["t1"] = "sekrit-static-token"
    ref = ClusterRef(
        credentials=CredentialsRef(
            provider=f"{bad.HERE}.Static", kwargs={"host": guarded.url, "account": "t1"}
        )
    )
    source = CredentialsSource(ref.credentials)  # type: ignore[arg-type]
    creds = await source.current()
    assert creds.token == "sekrit-static-token"
    assert "sekrit" not in repr(creds)
    assert "sekrit" not in ref.model_dump_json()
    described = describe_cluster(ref)
    assert described == f"credentials provider {bad.HERE}.Static (account, host)"
    assert guarded.url not in described  # kwargs values stay out of messages too
    assert source.fetches == 1
    await source.current()
    assert source.fetches == 1  # a token without expiry is fetched once


def test_the_ca_is_written_once_per_content_pem_or_base64(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    for given in (pem, base64.b64encode(pem.encode()).decode()):
        cfg = k8s_client.Configuration()
        apply_credentials(cfg, ClusterCredentials(host="https://10.0.0.1/", token="t", ca_cert=given))
        assert cfg.host == "https://10.0.0.1"
        assert Path(cfg.ssl_ca_cert).read_text() == pem + "\n"
        assert Path(cfg.ssl_ca_cert).parent.stat().st_mode & 0o077 == 0  # this process's own
        assert cfg.api_key == {"BearerToken": "t"}
        assert cfg.api_key_prefix == {"BearerToken": "Bearer"}
    with pytest.raises(ConfigurationError, match="neither PEM nor base64 of PEM"):
        apply_credentials(
            k8s_client.Configuration(), ClusterCredentials(host="https://h", token="t", ca_cert="nope!")
        )
