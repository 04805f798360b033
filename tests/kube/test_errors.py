"""Error translation: the pure mapping table, then each fault over real sockets."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from multidict import CIMultiDict

from finalizer.exceptions import (
    KubeRequestError,
    KubeTransientError,
    PodConflictError,
    PodNotFoundError,
)
from finalizer.kube import KubeCluster, error_for_status, kube_errors, translate
from finalizer.testing import FakeKube
from tests.support.kube import NS, running_pod

pytestmark = pytest.mark.anyio

STATUS_404 = json.dumps(
    {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": 'pods "x" not found', "code": 404}
)
APF_429 = "Too many requests, please try again later."


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "expected", "expected_retry_after"),
    [
        (404, STATUS_404, None, PodNotFoundError, None),
        (409, "{}", None, PodConflictError, None),
        (400, "bad", None, KubeRequestError, None),
        (403, "{}", None, KubeRequestError, None),
        (422, "{}", None, KubeRequestError, None),
        (429, APF_429, "7", KubeTransientError, 7.0),
        (429, APF_429, None, KubeTransientError, None),
        (500, "{}", None, KubeTransientError, None),
        (503, "{}", "2", KubeTransientError, 2.0),
        (504, "", None, KubeTransientError, None),
    ],
)
def test_error_for_status_table(
    status: int, body: str, retry_after: str | None, expected: type, expected_retry_after: float | None
) -> None:
    headers = CIMultiDict({"Retry-After": retry_after} if retry_after else {})
    error = error_for_status(status, body, headers)
    assert type(error) is expected
    assert error.status == status
    if isinstance(error, KubeTransientError):
        assert error.retry_after == expected_retry_after


def test_status_message_is_used_and_plain_text_kept() -> None:
    assert 'pods "x" not found' in str(error_for_status(404, STATUS_404))
    assert APF_429 in str(error_for_status(429, APF_429))


def _api_exception(status: int, body: str, headers: dict[str, str]) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.body = body
    exc.headers = CIMultiDict(headers)
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_api_exception(404, STATUS_404, {}), PodNotFoundError),
        (_api_exception(429, APF_429, {"Retry-After": "4"}), KubeTransientError),
        (aiohttp.WSServerHandshakeError(None, (), status=404, message="x"), PodNotFoundError),  # type: ignore[arg-type]
        (aiohttp.WSServerHandshakeError(None, (), status=500, message="x"), KubeTransientError),  # type: ignore[arg-type]
        (aiohttp.ServerDisconnectedError(), KubeTransientError),
        (aiohttp.ClientConnectionError("refused"), KubeTransientError),
        (TimeoutError(), KubeTransientError),
        (ConnectionResetError(), KubeTransientError),
    ],
)
def test_translate_table(exc: BaseException, expected: type) -> None:
    assert type(translate(exc)) is expected


def test_translate_leaves_foreign_bugs_alone() -> None:
    assert translate(ValueError("a bug")) is None
    with pytest.raises(ValueError, match="a bug"), kube_errors():
        raise ValueError("a bug")


def test_kube_errors_chains_the_original() -> None:
    original = _api_exception(429, APF_429, {"Retry-After": "4"})
    with pytest.raises(KubeTransientError) as info, kube_errors("read pod"):
        raise original
    assert info.value.__cause__ is original
    assert info.value.retry_after == 4.0
    assert str(info.value).startswith("read pod failed: HTTP 429")


# --- the same mapping, driven by the fake server's injected faults --------------------------------


async def test_json_status_errors_from_the_wire(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    with pytest.raises(PodNotFoundError, match="not found"):
        await cluster.pods.read_pod(NS, "missing")
    fake.faults.add("GET", r"/pods/p$", status=403, times=1)
    with pytest.raises(KubeRequestError) as info:
        await cluster.pods.read_pod(NS, "p")
    assert info.value.status == 403
    fake.faults.add("GET", r"/pods/p$", status=500, times=1)
    with pytest.raises(KubeTransientError) as transient:
        await cluster.pods.read_pod(NS, "p")
    assert transient.value.status == 500
    assert (await cluster.pods.read_pod(NS, "p")).name == "p"


async def test_plain_text_429_with_retry_after(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    fake.faults.add("GET", r"/pods/p$", plaintext_429=True, retry_after=5, times=1)
    with pytest.raises(KubeTransientError) as info:
        await cluster.pods.read_pod(NS, "p")
    assert info.value.status == 429
    assert info.value.retry_after == 5.0
    assert "Too many requests" in str(info.value)


async def test_latency_past_the_read_timeout_is_transient(fake: FakeKube) -> None:
    from finalizer.kube import KubeSettings, cluster_from_kubeconfig

    running_pod(fake, "p")
    fake.faults.add("GET", r"/pods/p$", status=None, latency=30.0, times=1)
    settings = KubeSettings(connect_timeout=1.0, read_timeout=0.3)
    async with cluster_from_kubeconfig(fake.kubeconfig, settings) as slow:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(KubeTransientError, match="timed out"):
            await slow.pods.read_pod(NS, "p")
        # The read timeout (0.3 s) ended it, not the answer (30 s late): 30x margin either way.
        assert loop.time() - started < 10


async def test_connection_reset_is_transient(fake: FakeKube, cluster: KubeCluster) -> None:
    running_pod(fake, "p")
    # aiohttp may re-send an idempotent GET once after a reset: reset every attempt.
    fake.faults.add("GET", r"/pods/p$", reset=True, times=None)
    with pytest.raises(KubeTransientError):
        await cluster.pods.read_pod(NS, "p")
    assert any(r.status == 0 for r in fake.requests)
    fake.faults.clear()
    assert (await cluster.pods.read_pod(NS, "p")).name == "p"


@pytest.mark.parametrize(
    ("body", "message"),
    [("<html>proxy page</html>", "not JSON"), ("[1, 2]", "sent list, expected an object")],
)
async def test_success_body_that_is_not_a_pod_is_transient(
    fake: FakeKube, cluster: KubeCluster, body: str, message: str
) -> None:
    """A 200 whose body is not a JSON object (a proxy's page) is retried like a 5xx, never parsed."""
    running_pod(fake, "p")
    fake.faults.add("GET", r"/pods/p$", status=200, body=body, times=1)
    with pytest.raises(KubeTransientError, match=message):
        await cluster.pods.read_pod(NS, "p")
    assert (await cluster.pods.read_pod(NS, "p")).name == "p"
