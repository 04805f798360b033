"""Injected faults as unmodified kubernetes_asyncio sees them; latency; the request log."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from finalizer.testing import FakeKube
from tests.fake_kube.helpers import exec_handshake

pytestmark = pytest.mark.anyio


async def test_json_status_fault_then_recovers(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="a")
    fake_kube.faults.add("GET", r"/pods/a$", status=503, retry_after=7)
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod("a", "default")
    assert info.value.status == 503
    assert info.value.headers["Retry-After"] == "7"
    body = json.loads(info.value.body)
    assert body["kind"] == "Status"
    assert body["reason"] == "ServiceUnavailable"
    assert body["code"] == 503
    pod = await core.read_namespaced_pod("a", "default")  # times=1: the next call passes
    assert pod.metadata.name == "a"


async def test_apf_429_is_plain_text_with_retry_after(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("GET", r"/pods", plaintext_429=True, retry_after=3)
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default")
    assert info.value.status == 429
    assert info.value.body == "Too many requests, please try again later.\n"
    assert info.value.headers["Retry-After"] == "3"
    assert info.value.headers["Content-Type"].startswith("text/plain")


async def test_apf_429_default_retry_after_is_one_second(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("GET", r"/pods", plaintext_429=True)
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default")
    assert info.value.headers["Retry-After"] == "1"


async def test_watch_gets_429_as_plain_http(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("GET", r"watch=True", plaintext_429=True)
    resp = await core.list_namespaced_pod("default", watch=True, _preload_content=False)
    assert resp.status == 429
    assert await resp.text() == "Too many requests, please try again later.\n"


async def test_custom_body(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("DELETE", r".*", status=500, body='{"kind":"Status","code":500,"message":"etcd"}')
    fake_kube.create_pod("default", name="a")
    with pytest.raises(ApiException) as info:
        await core.delete_namespaced_pod("a", "default")
    assert json.loads(info.value.body)["message"] == "etcd"
    assert fake_kube.get_pod("default", "a") is not None


async def test_times_none_is_forever_and_clear_removes(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("GET", r".*", status=500, times=None)
    for _ in range(3):
        with pytest.raises(ApiException):
            await core.list_namespaced_pod("default")
    fake_kube.faults.clear()
    await core.list_namespaced_pod("default")


async def test_times_n(fake_kube: FakeKube, core: Any) -> None:
    rule = fake_kube.faults.add("GET", r".*", status=502, times=2)
    statuses = []
    for _ in range(3):
        try:
            await core.list_namespaced_pod("default")
            statuses.append(200)
        except ApiException as exc:
            statuses.append(exc.status)
    assert statuses == [502, 502, 200]
    assert rule.fired == 2


async def test_method_filter(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("POST", r".*", status=500)
    await core.list_namespaced_pod("default")  # GET untouched
    with pytest.raises(ApiException):
        await core.create_namespaced_pod(
            "default", {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        )


async def test_latency_fault_delays_only_matching(fake_kube: FakeKube, core: Any) -> None:
    """A latency rule delays the requests it takes, and only those (an undelayed LIST's own time is
    a figure of ``tests/fake_kube/bench_fake_kube.py``, not a bound here)."""
    rule = fake_kube.faults.add("GET", r"/pods$", status=None, latency=0.3)
    started = time.monotonic()
    await core.list_namespaced_pod("default")
    slow = time.monotonic() - started
    assert rule.fired == 1
    await core.list_namespaced_pod("default")
    assert rule.fired == 1, "a spent rule (times=1) takes no further request: the second LIST is not delayed"
    await core.list_namespaced_pod("default", label_selector="a=b")  # another path: never matched
    assert rule.fired == 1
    assert slow >= 0.3


async def test_global_latency(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.latency = 0.1
    started = time.monotonic()
    for _ in range(3):
        await core.list_namespaced_pod("default")
    assert time.monotonic() - started >= 0.3


async def test_reset_once_is_silently_resent_by_aiohttp(fake_kube: FakeKube, core: Any) -> None:
    """aiohttp 3.14 re-sends an idempotent request once after a disconnect, even on a fresh connection."""
    fake_kube.faults.add("GET", r"/pods$", reset=True)
    body = await core.list_namespaced_pod("default")
    assert body.items == []
    assert [r.status for r in fake_kube.requests] == [0, 200]


async def test_reset_twice_is_a_client_error(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("GET", r"/pods$", reset=True, times=2)
    with pytest.raises(aiohttp.ClientError):
        await core.list_namespaced_pod("default")
    assert [r.status for r in fake_kube.requests] == [0, 0]


async def test_reset_on_create_is_not_resent(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.add("POST", r"/pods$", reset=True)
    manifest = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    with pytest.raises(aiohttp.ClientError):
        await core.create_namespaced_pod("default", manifest)
    assert fake_kube.get_pod("default", "x") is None


async def test_reset_on_delete_after_success_reads_404(fake_kube: FakeKube, core: Any) -> None:
    """The delete-succeeded-then-404 case: the first DELETE is applied, its answer lost, the resend 404s."""
    fake_kube.create_pod("default", name="a")
    fake_kube.faults.add("DELETE", r"/pods/a$", reset_after_handling=True)
    with pytest.raises(ApiException) as info:
        await core.delete_namespaced_pod("a", "default")  # aiohttp re-sends it once, silently
    assert info.value.status == 404
    assert fake_kube.get_pod("default", "a") is None
    assert [(r.verb, r.status) for r in fake_kube.requests] == [("delete", 0), ("delete", 404)]


async def test_exec_fault_refuses_upgrade(fake_kube: FakeKube, core_ws: Any) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    fake_kube.faults.add("GET", r"/exec", status=500)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await exec_handshake(core_ws, "p", container="base")
    assert info.value.status == 500


async def test_request_log_and_counts(fake_kube: FakeKube, core: Any, core_ws: Any) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    await core.list_namespaced_pod("default")
    await core.read_namespaced_pod("p", "default")
    await core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
    resp = await core.list_namespaced_pod("default", watch=True, timeout_seconds=0.1, _preload_content=False)
    await resp.read()
    await exec_handshake(core_ws, "p", container="base")
    await core.read_namespaced_pod_log("p", "default", container="base")
    await core.delete_namespaced_pod("p", "default")
    with pytest.raises(ApiException):
        await core.read_namespaced_pod("p", "default")
    counts = fake_kube.request_counts()
    assert counts == {
        ("list", "pods"): 1,
        ("get", "pods"): 2,
        ("patch", "pods"): 1,
        ("watch", "pods"): 1,
        ("exec", "pods"): 1,
        ("log", "pods"): 1,
        ("delete", "pods"): 1,
    }
    by_verb = {r.verb: r for r in fake_kube.requests}
    assert by_verb["exec"].status == 101
    assert by_verb["get"].status == 404  # the last GET
    assert by_verb["delete"].namespace == "default"
    assert by_verb["delete"].name == "p"
    fake_kube.clear_requests()
    assert fake_kube.requests == []


async def _statuses(core: Any, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        try:
            await core.list_namespaced_pod("default")
            statuses.append(200)
        except ApiException as exc:
            statuses.append(exc.status)
    return statuses


async def test_probabilistic_rule_fires_on_its_share_and_repeats_with_its_seed(
    fake_kube: FakeKube, core: Any
) -> None:
    """A chaos run's faults: p = 0.3 over 200 requests fires 30 % +- a few, the same requests again
    for the same seed, and ``fired`` counts only the requests it took."""
    fake_kube.faults.seed(7)
    rule = fake_kube.faults.add("GET", r"/pods$", status=503, times=None, probability=0.3)
    first = await _statuses(core, 200)
    assert rule.fired == first.count(503)
    assert 40 <= first.count(503) <= 80, first.count(503)
    assert set(first) == {200, 503}
    fake_kube.faults.clear()
    fake_kube.faults.seed(7)
    fake_kube.faults.add("GET", r"/pods$", status=503, times=None, probability=0.3)
    assert await _statuses(core, 200) == first


async def test_probabilistic_rule_respects_times(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.faults.seed(1)
    rule = fake_kube.faults.add("GET", r"/pods$", status=500, times=3, probability=0.5)
    statuses = await _statuses(core, 60)
    assert statuses.count(500) == 3 == rule.fired


@pytest.mark.parametrize("probability", [0.0, -0.1, 1.5])
async def test_probability_outside_zero_one_is_refused(fake_kube: FakeKube, probability: float) -> None:
    with pytest.raises(ValueError, match="probability"):
        fake_kube.faults.add("GET", r".*", probability=probability)


async def _delete_outcome(core: Any, name: str) -> str:
    try:
        await core.delete_namespaced_pod(name, "default")
    except ApiException as exc:
        return str(exc.status)
    except aiohttp.ClientError:
        return "reset"
    return "200"


async def test_delete_applied_answer_lost_on_a_share_of_deletes(fake_kube: FakeKube, core: Any) -> None:
    """The chaos mix's "DELETE applied, answer lost", drawn per request: every pod is gone either way.
    A lost answer is a reset (status 0); aiohttp resends once, and that resend answers 404, or is
    lost too (the rule draws again), which the client sees as a connection error."""
    fake_kube.faults.seed(3)
    fake_kube.faults.add("DELETE", r"/pods/", reset_after_handling=True, times=None, probability=0.5)
    names = [f"p{i}" for i in range(16)]
    for name in names:
        fake_kube.create_pod("default", name=name)
    outcomes = [await _delete_outcome(core, name) for name in names]
    assert set(outcomes) <= {"200", "404", "reset"}
    assert all(fake_kube.get_pod("default", n) is None for n in names)
    deletes = [r.status for r in fake_kube.requests if r.verb == "delete"]
    assert deletes.count(0) == outcomes.count("404") + 2 * outcomes.count("reset")
    assert deletes.count(404) == outcomes.count("404")
    assert "200" in outcomes
    assert "404" in outcomes


async def test_request_log_keeps_the_user_agent(fake_kube: FakeKube, core: Any) -> None:
    """The chaos checks tell the triggerer's client (kubernetes_asyncio) from a worker's (kubernetes)."""
    await core.list_namespaced_pod("default")
    (record,) = fake_kube.requests
    assert record.user_agent == core.api_client.user_agent
    assert record.user_agent.startswith("OpenAPI-Generator/")
