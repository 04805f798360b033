"""Shared by the Job tests: wait on a Job (or its pods) through the fake's own watch, read conditions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio

JSON = dict[str, Any]


def conditions(job: JSON) -> list[str]:
    """Types of the Job's True conditions, in the order they were added."""
    return [c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]


def finished(job: JSON) -> bool:
    return any(t in ("Complete", "Failed") for t in conditions(job))


async def watch_job(
    batch: Any, name: str, until: Callable[[JSON], bool], *, namespace: str = "default", within: float = 20.0
) -> list[JSON]:
    """Every state of the Job a watch delivers (from ADDED on) up to the first that satisfies ``until``."""
    seen: list[JSON] = []
    with anyio.fail_after(within):
        resp = await batch.list_namespaced_job(
            namespace,
            watch=True,
            field_selector=f"metadata.name={name}",
            timeout_seconds=int(within) + 1,
            _preload_content=False,
        )
        try:
            async for line in resp.content:
                event = json.loads(line)
                if event["type"] == "BOOKMARK":
                    continue
                seen.append(event["object"])
                if until(event["object"]):
                    return seen
        finally:
            resp.close()
    raise AssertionError(f"job {name} ended its watch before the expected state; saw {len(seen)} states")


async def watch_pods(
    core: Any, selector: str, until: Callable[[dict[str, JSON]], bool], *, within: float = 20.0
) -> dict[str, JSON]:
    """Pods matching ``selector`` by name (deleted ones dropped), watched until ``until`` holds."""
    pods: dict[str, JSON] = {}
    with anyio.fail_after(within):
        resp = await core.list_namespaced_pod(
            "default",
            watch=True,
            label_selector=selector,
            timeout_seconds=int(within) + 1,
            _preload_content=False,
        )
        try:
            async for line in resp.content:
                event = json.loads(line)
                if event["type"] == "BOOKMARK":
                    continue
                name = event["object"]["metadata"]["name"]
                if event["type"] == "DELETED":
                    pods.pop(name, None)
                else:
                    pods[name] = event["object"]
                if until(pods):
                    return pods
        finally:
            resp.close()
    raise AssertionError(f"pods {selector} ended their watch before the expected state")


def base_done(pod: JSON) -> bool:
    """The pod's base container has terminated (the sidecar may still run)."""
    return any(
        s["name"] == "base" and "terminated" in s["state"]
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    )
