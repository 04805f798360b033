"""End to end: a KPO subclass with its own cluster connection, through a real `airflow triggerer`.

The cluster answers 401 to anything but a live token of a ``TokenIssuer`` (tokens live a few
seconds, as GKE's and EKS's live minutes); ``TokenPodOperator.finalizer_cluster()`` names the
provider that fetches them. The finalizer in the triggerer connects through it, and keeps
connecting after the first token expired; no token reaches the trigger's kwargs, the ledger or a
log. A provider that cannot get a token takes the classic path, which fails the same way and
sends the task to the worker with the provider named.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from kubernetes.client import models as k8s

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import wait_for, wait_for_ti_state
from finalizer.testing.token_issuer import PROVIDER, TokenIssuer
from finalizer.testing.triggerer_process import TriggererProcess
from finalizer.testing.worker import serialize_trigger
from tests.triggers import e2e
from tests.triggers.token_operator import TokenPodOperator
from triggers.pod import FinalizingPodTrigger

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]

#: Token lifetime: shorter than the pod's run below, so the first one expires mid-task.
TTL = 4.0


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer.in_thread(ttl=TTL) as token_issuer:
        yield token_issuer


@pytest.fixture(scope="module")
def guarded(issuer: TokenIssuer) -> Iterator[FakeKube]:
    with FakeKube.in_thread(authorize=issuer.authorize) as kube:
        yield kube


def token_trigger(
    issuer: TokenIssuer, kube: FakeKube, pod: e2e.PodHandle, task_id: str
) -> FinalizingPodTrigger:
    """What the subclass defers to, from its own ``invoke_defer_method``."""
    op = TokenPodOperator(
        task_id=task_id, name=pod.name, namespace=pod.namespace, image="alpine:3", deferrable=True,
        do_xcom_push=True, kubernetes_conn_id=None, startup_timeout_seconds=30, schedule_timeout_seconds=30,
        issuer_url=issuer.url, cluster_url=kube.url,
    )  # fmt: skip
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=pod.name, namespace=pod.namespace, uid=pod.uid))
    with pytest.raises(TaskDeferred) as info:
        op.invoke_defer_method()
    trigger = info.value.trigger
    assert isinstance(trigger, FinalizingPodTrigger)
    return trigger


def sqlite_text(url: str) -> str:
    """The SQLite ledger's file, bytes as text (the job spec and every column are in it)."""
    return Path(url.removeprefix("sqlite:///")).read_bytes().decode("utf-8", "replace")


def no_token_in(text: str, issuer: TokenIssuer) -> list[str]:
    return [token for token in issuer.minted if token in text]


@pytest.mark.anyio
async def test_the_finalizer_connects_through_the_subclass_provider_past_the_first_tokens_expiry(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    app: Any,
    issuer: TokenIssuer,
    guarded: FakeKube,
    ledger_url: str,
) -> None:
    pod = e2e.new_pod(guarded, "hook-ok")
    guarded.write_xcom(e2e.NAMESPACE, pod.name, '{"via": "provider"}')
    trigger = token_trigger(issuer, guarded, pod, "a")
    _, kwargs = serialize_trigger(trigger)
    assert kwargs["cluster_credentials"]["provider"] == PROVIDER
    ti = env.create_run(e2e.DAG_ID).ti("a")
    deferred = time.time()
    await e2e.defer(env, app, ti, trigger)
    wait_for(lambda: e2e.followed_since(guarded, pod, deferred), 60, 0.05, "the finalizer to watch the pod")
    assert issuer.issued >= 1
    # Every token handed out so far stops working; the pod ends only then.
    wait_for(lambda: issuer.live() == 0, 3 * TTL, 0.1, "the tokens issued so far to expire")
    first_batch = issuer.issued
    guarded.terminate(e2e.NAMESPACE, pod.name, exit_code=0)

    final = wait_for_ti_state(ti, {"success", "failed", "scheduled", "up_for_retry"}, timeout=90)
    log = trigger_logs(env, ti)
    assert final.state == "success", log[-3000:]
    assert e2e.xcom(env, ti) == {"via": "provider"}
    wait_for(
        lambda: guarded.get_pod(e2e.NAMESPACE, pod.name) is None, 30, what="the finalizer deletes the pod"
    )
    # The exec, the XCom read and the delete went out with a fresh token: the cluster never said 401.
    assert issuer.issued > first_batch
    assert issuer.rejected == 0
    # No token in the trigger's kwargs, the task's log, the triggerer's log or the ledger.
    assert no_token_in(repr(kwargs), issuer) == []
    assert no_token_in(log, issuer) == []
    assert no_token_in(triggerer.logs(), issuer) == []
    assert no_token_in(sqlite_text(ledger_url), issuer) == []


@pytest.mark.anyio
async def test_a_provider_that_cannot_get_a_token_sends_the_task_to_the_worker_naming_it(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, guarded: FakeKube
) -> None:
    with TokenIssuer.in_thread(ttl=TTL) as down:  # its own cluster identity: no client shared
        down.failing = True
        pod = e2e.new_pod(guarded, "hook-down")
        trigger = token_trigger(down, guarded, pod, "b")
        ti = env.create_run(e2e.DAG_ID).ti("b")
        await e2e.defer(env, app, ti, trigger)
        final = wait_for_ti_state(ti, {"success", "failed", "scheduled", "up_for_retry"}, timeout=120)
        log = trigger_logs(env, ti)
        assert final.state == "scheduled", log[-3000:]  # the classic event: the worker ends it
        assert f"credentials provider {PROVIDER} (cluster_url, issuer_url) failed" in log
        assert "503" in log
        assert "classic path" in log
        assert guarded.get_pod(e2e.NAMESPACE, pod.name) is not None  # nothing deleted
