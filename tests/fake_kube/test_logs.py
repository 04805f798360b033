"""``pods/{name}/log`` through kubernetes_asyncio."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from finalizer.testing import FakeKube

pytestmark = pytest.mark.anyio


@pytest.fixture
def logged(fake_kube: FakeKube) -> FakeKube:
    fake_kube.create_pod("default", name="p")
    fake_kube.start("default", "p")
    fake_kube.set_logs("default", "p", "base", ["alpha", "beta", "gamma \u2603"])
    return fake_kube


async def read(core: Any, **kwargs: Any) -> str:
    resp = await core.read_namespaced_pod_log("p", "default", _preload_content=False, **kwargs)
    return (await resp.read()).decode()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"container": "base"}, "alpha\nbeta\ngamma \u2603\n"),
        ({"container": "base", "tail_lines": 2}, "beta\ngamma \u2603\n"),
        ({"container": "base", "tail_lines": 0}, ""),
        ({"container": "base", "limit_bytes": 8}, "alpha\nbe"),
        ({"container": "base", "since_seconds": 3600}, "alpha\nbeta\ngamma \u2603\n"),
        ({"container": "airflow-xcom-sidecar"}, ""),
    ],
)
async def test_log_parameters(logged: FakeKube, core: Any, kwargs: dict[str, Any], expected: str) -> None:
    assert await read(core, **kwargs) == expected


async def test_timestamps_prefix_rfc3339_nano(logged: FakeKube, core: Any) -> None:
    text = await read(core, container="base", timestamps=True)
    lines = text.splitlines()
    assert len(lines) == 3
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z alpha$", lines[0])
    assert lines[1].endswith(" beta")


@pytest.mark.parametrize(
    ("name", "container", "status", "fragment"),
    [
        ("missing", "base", 404, 'pods \\"missing\\" not found'),
        ("p", "", 400, "a container name must be specified for pod p"),
        ("p", "nope", 400, "container nope is not valid for pod p"),
    ],
)
async def test_log_errors(
    logged: FakeKube, core: Any, name: str, container: str, status: int, fragment: str
) -> None:
    kwargs = {"container": container} if container else {}
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod_log(name, "default", **kwargs)
    assert info.value.status == status
    assert json.loads(info.value.body)["kind"] == "Status"
    assert fragment in info.value.body


async def test_waiting_container_log_is_400(fake_kube: FakeKube, core: Any) -> None:
    fake_kube.create_pod("default", name="p")
    fake_kube.image_pull_failure("default", "p", "ImagePullBackOff")
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod_log("p", "default", container="base")
    assert info.value.status == 400
    assert "is waiting to start: ImagePullBackOff" in info.value.body


async def test_follow_streams_until_container_stops(logged: FakeKube, core: Any) -> None:
    resp = await core.read_namespaced_pod_log(
        "p", "default", container="base", follow=True, _preload_content=False
    )
    assert await resp.content.readline() == b"alpha\n"
    await resp.content.readline()
    await resp.content.readline()
    logged.append_logs("default", "p", "base", ["delta"])
    assert await resp.content.readline() == b"delta\n"
    logged.terminate("default", "p", "base")
    assert await resp.content.read() == b""


async def test_log_of_terminated_container_is_readable(logged: FakeKube, core: Any) -> None:
    logged.terminate("default", "p", "base", exit_code=1)
    assert await read(core, container="base", follow=True) == "alpha\nbeta\ngamma \u2603\n"


async def test_unreachable_node_then_recovered(logged: FakeKube, core: Any) -> None:
    logged.node_unreachable("default", "p")
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod_log("p", "default", container="base")
    assert info.value.status == 500
    assert json.loads(info.value.body)["reason"] == "InternalError"
    logged.node_unreachable("default", "p", False)
    assert await read(core, container="base", tail_lines=1) == "gamma \u2603\n"
