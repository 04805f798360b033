"""The operator hook through which a KPO subclass supplies its own cluster connection.

Real operators run ``invoke_defer_method``: a subclass whose ``finalizer_cluster()`` names a
``CredentialsProvider`` defers to ``FinalizingPodTrigger`` with ``cluster_credentials`` (a
GKE-like subclass's own trigger class too); its classic path connects through that provider to a
fake cluster that only accepts the provider's short-lived tokens; a broken hook keeps the
operator's own trigger and says why in one ERROR line.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk.exceptions import TaskDeferred
from kubernetes.client import models as k8s
from pydantic import ValidationError

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import ClusterRef, CredentialsRef
from finalizer.testing import FakeKube
from finalizer.testing.token_issuer import PROVIDER, TokenIssuer
from finalizer.testing.worker import serialize_trigger
from tests.triggers.token_operator import TokenPodOperator
from triggers.cluster_hook import CredentialsKubernetesHook, cluster_ref_for, credentials_ref
from triggers.operator import FinalizingKubernetesPodOperator
from triggers.pod import FinalizingPodTrigger

NS = "jobs"


class ClusterUrlPodTrigger(KubernetesPodTrigger):  # type: ignore[misc]
    """Shaped like ``GKEStartPodTrigger``: extra connection kwargs and its own hook."""

    def __init__(
        self, *args: Any, cluster_url: str, ssl_ca_cert: str, gcp_conn_id: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cluster_url, self.ssl_ca_cert, self.gcp_conn_id = cluster_url, ssl_ca_cert, gcp_conn_id


class ClusterUrlPodOperator(FinalizingKubernetesPodOperator):
    """Shaped like ``GKEStartPodOperator``: its ``invoke_defer_method`` builds its own trigger."""

    hook_answer: Any = None

    def invoke_defer_method(self, last_log_time: Any = None, context: Any = None) -> None:
        self.defer(
            trigger=ClusterUrlPodTrigger(
                pod_name=self.pod.metadata.name,
                pod_namespace=self.pod.metadata.namespace,
                trigger_start_time=datetime.datetime.now(datetime.UTC),
                base_container_name=self.base_container_name,
                poll_interval=7,
                on_finish_action="keep_pod",
                cluster_url="https://34.1.2.3",
                ssl_ca_cert="LS0t",
                gcp_conn_id="google_cloud_default",
            ),
            method_name="trigger_reentry",
        )

    def finalizer_cluster(self) -> Any:
        answer = type(self).hook_answer
        if isinstance(answer, Exception):
            raise answer
        return answer


def deferred(op: FinalizingKubernetesPodOperator, name: str = "p-1", uid: str = "uid-1") -> Any:
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, namespace=NS, uid=uid))
    with pytest.raises(TaskDeferred) as info:
        op.invoke_defer_method()
    assert info.value.method_name == "trigger_reentry"
    return info.value.trigger


def cluster_url_operator(answer: Any) -> ClusterUrlPodOperator:
    ClusterUrlPodOperator.hook_answer = answer
    return ClusterUrlPodOperator(task_id="gke", image="alpine:3", name="gke", namespace=NS, deferrable=True)


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.in_thread(ttl=30) as token_issuer:
        yield token_issuer


@pytest.fixture
def guarded(issuer: TokenIssuer) -> Iterator[FakeKube]:
    with FakeKube.in_thread(authorize=issuer.authorize) as kube:
        yield kube


def test_the_subclass_connection_travels_as_provider_and_kwargs_only() -> None:
    op = TokenPodOperator(
        task_id="t",
        image="alpine:3",
        name="t",
        namespace=NS,
        deferrable=True,
        issuer_url="http://127.0.0.1:1/token",
        cluster_url="https://10.0.0.1",
    )
    trigger = deferred(op)
    assert type(trigger) is FinalizingPodTrigger
    assert trigger.cluster_credentials == op.finalizer_cluster()
    classpath, kwargs = serialize_trigger(trigger)
    assert classpath == "triggers.pod.FinalizingPodTrigger"  # as the Task SDK sends it to the API
    assert kwargs["cluster_credentials"] == {
        "provider": PROVIDER,
        "kwargs": {"issuer_url": "http://127.0.0.1:1/token", "cluster_url": "https://10.0.0.1"},
    }
    again = FinalizingPodTrigger(**trigger.serialize()[1])
    assert again.serialize() == trigger.serialize()
    assert isinstance(again.hook, CredentialsKubernetesHook)


def test_a_trigger_without_credentials_serialises_as_before() -> None:
    op = FinalizingKubernetesPodOperator(
        task_id="t", image="alpine:3", name="t", namespace=NS, deferrable=True
    )
    trigger = deferred(op)
    assert "cluster_credentials" not in trigger.serialize()[1]
    assert type(trigger.hook) is AsyncKubernetesHook


def test_a_gke_like_trigger_is_swapped_with_its_kpo_kwargs_and_the_subclass_connection() -> None:
    ref = CredentialsRef(
        provider=PROVIDER, kwargs={"issuer_url": "http://i", "cluster_url": "https://34.1.2.3"}
    )
    trigger = deferred(cluster_url_operator(ref))
    assert type(trigger) is FinalizingPodTrigger
    assert trigger.cluster_credentials == ref
    assert trigger.poll_interval == 7
    assert trigger.on_finish_action.value == "keep_pod"
    assert trigger.pod_uid == "uid-1"
    assert "cluster_url" not in trigger.serialize()[1]  # replaced by the provider's kwargs


def test_a_gke_like_trigger_without_a_hook_is_left_alone() -> None:
    assert type(deferred(cluster_url_operator(None))) is ClusterUrlPodTrigger


def _secret_kwarg_error() -> ValidationError:
    try:
        CredentialsRef(provider="a.B", kwargs={"token": "sekrit-value"})
    except ValidationError as exc:
        return exc
    raise AssertionError("a secret-named kwarg was accepted")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (RuntimeError("no cluster endpoint yet"), "RuntimeError: no cluster endpoint yet"),
        (
            _secret_kwarg_error(),
            "invalid CredentialsRef (kwargs: Value error, credentials kwargs ['token'] look",
        ),
        (42, "returned int; expected a CredentialsRef, a dict or None"),
        ({"provider": "nodots"}, "invalid ref (provider: String should match pattern"),
        ({"provider": "a.B", "kwargs": {"id_token": "x"}}, "look like secrets"),
        ({"provider": "no_such_pkg.Provider"}, "cannot import credentials provider no_such_pkg.Provider"),
        (
            {"provider": "json.JSONDecoder"},
            "is not a finalizer.kube.credentials.CredentialsProvider subclass",
        ),
        (
            {"provider": PROVIDER, "kwargs": {"cluster_url": "https://x"}},
            "cannot construct credentials provider",
        ),
    ],
)
def test_a_broken_hook_keeps_the_operators_own_trigger_with_one_error_line(
    answer: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trigger = deferred(cluster_url_operator(answer))
    assert type(trigger) is ClusterUrlPodTrigger  # the classic path its operator built, unchanged
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if "finalizer_cluster()" in line]
    assert len(lines) == 1, lines
    assert "[error" in lines[0]
    assert message in lines[0]
    assert "keeps its operator's own trigger (classic path)" in lines[0]
    assert "sekrit" not in captured.out + captured.err


def test_credentials_ref_accepts_the_ref_its_dict_or_none() -> None:
    ref = CredentialsRef(provider=PROVIDER, kwargs={"issuer_url": "http://i", "cluster_url": "https://c"})
    assert credentials_ref(ref) == ref
    assert credentials_ref(ref.model_dump()) == ref
    assert credentials_ref(None) is None
    with pytest.raises(ConfigurationError, match="cannot import"):
        credentials_ref({"provider": "no_such_pkg.P"})
    assert credentials_ref({"provider": "no_such_pkg.P"}, check_import=False) is not None


@pytest.mark.anyio
async def test_the_classic_path_connects_through_the_provider(issuer: TokenIssuer, guarded: FakeKube) -> None:
    """The provider's ``KubernetesPodTrigger.run`` (the classic path) reads the pod with its tokens."""
    guarded.create_pod(NS, name="classic")
    guarded.start(NS, "classic")
    guarded.terminate(NS, "classic", exit_code=0)
    op = TokenPodOperator(
        task_id="t", image="alpine:3", name="t", namespace=NS, deferrable=True,
        issuer_url=issuer.url, cluster_url=guarded.url,
    )  # fmt: skip
    trigger = deferred(op, name="classic")
    events = [event async for event in KubernetesPodTrigger.run(trigger)]
    assert [e.payload["status"] for e in events] == ["success"], events
    assert issuer.issued >= 1
    assert issuer.rejected == 0


@pytest.mark.anyio
async def test_a_failing_provider_on_the_classic_path_is_an_error_event_naming_it(
    issuer: TokenIssuer, guarded: FakeKube
) -> None:
    guarded.create_pod(NS, name="down")
    issuer.failing = True
    op = TokenPodOperator(
        task_id="t", image="alpine:3", name="t", namespace=NS, deferrable=True,
        issuer_url=issuer.url, cluster_url=guarded.url,
    )  # fmt: skip
    trigger = deferred(op, name="down")
    events = [event async for event in KubernetesPodTrigger.run(trigger)]
    assert [e.payload["status"] for e in events] == ["error"]
    message = events[0].payload["message"]
    assert f"credentials provider {PROVIDER} (cluster_url, issuer_url) failed" in message
    assert "503" in message


def test_the_finalizers_cluster_is_the_provider_alone_or_the_triggers_connection() -> None:
    """Tasks of one provider identity share a client whatever their other connection kwargs."""
    ref = CredentialsRef(provider=PROVIDER, kwargs={"issuer_url": "http://i", "cluster_url": "https://c"})
    trigger = deferred(cluster_url_operator(ref))
    assert cluster_ref_for(trigger, trigger.cluster_credentials) == ClusterRef(credentials=ref)
    plain = deferred(
        FinalizingKubernetesPodOperator(
            task_id="t",
            image="alpine:3",
            name="t",
            namespace=NS,
            deferrable=True,
            kubernetes_conn_id="k8s",
            cluster_context="ctx",
        )
    )
    assert cluster_ref_for(plain, plain.cluster_credentials) == ClusterRef(
        kubernetes_conn_id="k8s", cluster_context="ctx", in_cluster=plain.in_cluster
    )
