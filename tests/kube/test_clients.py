"""The per-cluster client pool: one client per ClusterRef, config sources, bounds, clean close."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from finalizer.exceptions import ConfigurationError, FinalizerError, FinalizerUnavailableError
from finalizer.jobs import ClusterRef
from finalizer.kube import KubeClients, KubeSettings
from finalizer.kube.config import _uses_exec_auth, load_configuration
from finalizer.retry import classify
from finalizer.testing import FakeKube
from tests.support.kube import FAST, NS, running_pod

pytestmark = pytest.mark.anyio


async def test_one_client_per_cluster_key(fake: FakeKube) -> None:
    ref = ClusterRef(config_dict=fake.kubeconfig)
    async with KubeClients(FAST) as clients:
        many = await asyncio.gather(*(clients.get(ref) for _ in range(20)))
        assert all(c is many[0] for c in many)
        again = await clients.get(ClusterRef(config_dict=fake.kubeconfig))  # equal ref, same key
        assert again is many[0]
        other = await clients.get(ClusterRef(config_dict=fake.kubeconfig, cluster_context="fake-kube"))
        assert other is not many[0]
        assert len(clients) == 2
        running_pod(fake, "p")
        for _ in range(5):
            await many[0].pods.read_pod(NS, "p")
        assert many[0].api.rest_client.pool_manager is again.api.rest_client.pool_manager
    assert many[0].api.rest_client.pool_manager.closed
    assert other.api.rest_client.pool_manager.closed
    with pytest.raises(FinalizerUnavailableError, match="closed"):
        await clients.get(ref)


async def test_a_closed_pool_raises_the_finalizers_own_error(fake: FakeKube) -> None:
    """Not a bare RuntimeError: callers (the service's job runner, retry.classify) decide on our tree."""
    clients = KubeClients(FAST)
    await clients.get(ClusterRef(config_dict=fake.kubeconfig))
    await clients.aclose()
    with pytest.raises(FinalizerError) as info:
        await clients.get(ClusterRef(config_dict=fake.kubeconfig))
    assert type(info.value) is FinalizerUnavailableError
    assert not isinstance(info.value, RuntimeError)
    assert classify(info.value) is None  # terminal: a stopped pool does not come back
    assert len(clients) == 0


async def test_airflow_connection_is_read_by_the_providers_hook(
    fake: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "kubernetes", "extra": {"kube_config": fake.kubeconfig}}
    monkeypatch.setenv("AIRFLOW_CONN_H3_FAKE_KUBE", json.dumps(conn))
    running_pod(fake, "p")
    async with KubeClients(FAST) as clients:
        cluster = await clients.get(ClusterRef(kubernetes_conn_id="h3_fake_kube"))
        assert cluster.configuration.host == fake.url
        assert (await cluster.pods.read_pod(NS, "p")).name == "p"
        assert fake.token in str(cluster.configuration.api_key)


async def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot load Kubernetes configuration"):
        await load_configuration(ClusterRef(config_dict={"clusters": [], "contexts": [], "users": []}))


async def test_configuration_error_never_shows_the_kubeconfig_secrets(fake: FakeKube) -> None:
    """A broken kubeconfig dict still holds a live token: the error (which gets logged) must not."""
    secret = "kube-bearer-token-that-must-never-be-logged"
    broken = dict(fake.kubeconfig, **{"current-context": "no-such-context"})
    broken["users"] = [{"name": "u", "user": {"token": secret, "client-key-data": secret}}]
    bad = ClusterRef(config_dict=broken, cluster_context="no-such-context")
    with pytest.raises(ConfigurationError) as err:
        await load_configuration(bad)
    message = str(err.value)
    assert secret not in message
    assert "no-such-context" in message  # still says which cluster
    assert bad.key in message
    assert secret not in str(err.value.__cause__)


async def test_in_cluster_configuration_reads_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``in_cluster=True``: the pod's service-account token and CA, the API from the service env vars.

    The token file is rotated by the kubelet; kubernetes_asyncio's own hook re-reads it, so we do
    not install ours (``short_lived`` False). The fake speaks plain HTTP, so no request is made here.
    """
    from kubernetes_asyncio.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("service-account-token")
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg, short_lived = await load_configuration(ClusterRef(in_cluster=True))
    assert cfg.host == "https://10.96.0.1:443"
    assert cfg.ssl_ca_cert == str(ca)
    assert cfg.api_key["BearerToken"] == "Bearer service-account-token"
    assert cfg.refresh_api_key_hook is not None
    assert short_lived is False
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ConfigurationError, match="from in-cluster configuration: Service host/port"):
        await load_configuration(ClusterRef(in_cluster=True))


async def test_failed_creation_is_not_cached(fake: FakeKube) -> None:
    bad = ClusterRef(config_dict={"current-context": "nope", "contexts": [], "clusters": [], "users": []})
    async with KubeClients(FAST) as clients:
        for _ in range(2):
            with pytest.raises(ConfigurationError):
                await clients.get(bad)
        assert len(clients) == 0


@pytest.mark.parametrize(
    ("user", "exec_auth"),
    [({"token": "t"}, False), ({"exec": {"command": "aws"}}, True)],
)
def test_exec_auth_detection(user: dict[str, object], exec_auth: bool) -> None:
    kubeconfig = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": user}, {"name": "other", "user": {"exec": {}}}],
    }
    assert _uses_exec_auth(kubeconfig, None) is exec_auth


def test_settings_validation() -> None:
    with pytest.raises(ConfigurationError):
        KubeSettings(max_concurrency=0)
    with pytest.raises(ConfigurationError):
        KubeSettings(read_timeout=0)
    assert KubeSettings(connect_timeout=3, read_timeout=7).request_timeout == (3, 7)


async def test_concurrency_is_bounded_per_cluster(fake: FakeKube) -> None:
    running_pod(fake, "p")
    fake.latency = 0.1
    settings = KubeSettings(max_concurrency=3)
    async with KubeClients(settings) as clients:
        cluster = await clients.get(ClusterRef(config_dict=fake.kubeconfig))
        await asyncio.gather(*(cluster.pods.read_pod(NS, "p") for _ in range(12)))
    gets = [r for r in fake.requests if r.verb == "get"]
    assert len(gets) == 12
    # At most 3 requests were ever in flight at the server at once.
    edges = sorted([(r.time, 1) for r in gets] + [(r.time + r.duration, -1) for r in gets])
    in_flight = peak = 0
    for _, delta in edges:
        in_flight += delta
        peak = max(peak, in_flight)
    assert peak <= 3
    assert peak >= 2  # and the bound is not a serialisation


def exec_plugin_kubeconfig(fake: FakeKube, tmp_path: Path, token_file: Path) -> dict[str, Any]:
    """The fake's kubeconfig with an EKS/GKE-style exec plugin that prints the token in ``token_file``."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, sys\n"
        "token = open(sys.argv[1]).read().strip()\n"
        'print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",'
        ' "status": {"token": token}}))\n'
    )
    kubeconfig = fake.kubeconfig
    kubeconfig["users"] = [
        {
            "name": "fake-kube",
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "command": sys.executable,
                    "args": [str(plugin), str(token_file)],
                }
            },
        }
    ]
    return kubeconfig


async def test_exec_plugin_tokens_are_refreshed(fake: FakeKube, tmp_path: Path) -> None:
    """EKS/GKE-style short-lived tokens: the shared client re-runs the plugin, keeps its session."""
    token_file = tmp_path / "token"
    token_file.write_text("first-token")
    kubeconfig = exec_plugin_kubeconfig(fake, tmp_path, token_file)
    running_pod(fake, "p")
    settings = dataclasses.replace(FAST, credential_refresh_seconds=0.0)
    async with KubeClients(settings) as clients:
        cluster = await clients.get(ClusterRef(config_dict=kubeconfig))
        session = cluster.api.rest_client.pool_manager
        assert cluster.configuration.api_key["BearerToken"] == "Bearer first-token"
        token_file.write_text("second-token")
        assert (await cluster.pods.read_pod(NS, "p")).name == "p"
        assert cluster.configuration.api_key["BearerToken"] == "Bearer second-token"
        assert cluster.api.rest_client.pool_manager is session


async def test_a_failed_credential_refresh_keeps_the_current_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exec plugin that fails once (a network blip at the cloud's token service) fails no request."""
    import logging

    async with FakeKube(require_token=True) as fake:
        token_file = tmp_path / "token"
        token_file.write_text(fake.token)
        kubeconfig = exec_plugin_kubeconfig(fake, tmp_path, token_file)
        running_pod(fake, "p")
        caplog.set_level(logging.WARNING, logger="finalizer.kube")
        settings = dataclasses.replace(FAST, credential_refresh_seconds=0.0)
        async with KubeClients(settings) as clients:
            cluster = await clients.get(ClusterRef(config_dict=kubeconfig))
            token_file.unlink()  # the plugin now crashes
            assert (await cluster.pods.read_pod(NS, "p")).name == "p"
            assert cluster.configuration.api_key["BearerToken"] == f"Bearer {fake.token}"
            assert "could not refresh Kubernetes credentials" in caplog.text
            assert fake.token not in caplog.text
            token_file.write_text(fake.token)  # the plugin recovers: refreshes resume
            assert (await cluster.pods.read_pod(NS, "p")).name == "p"
        assert [r.status for r in fake.requests if r.verb == "get"] == [200, 200]
