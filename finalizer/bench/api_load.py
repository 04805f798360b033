"""``kpo-finalizer bench api-load``: what watching N running pods costs the API server and the triggerer.

One run, two sides, each in its own child process so its CPU is its own, against one fake
Kubernetes API server that lives in this process (a thread) and counts every request:

* ``upstream``: N ``KubernetesPodTrigger.run()`` coroutines (cncf-kubernetes, unmodified) on one
  asyncio loop, ``config_dict`` = the fake's kubeconfig, ``poll_interval`` = 2 s (upstream default);
* ``ours``: kpo-finalizer's shared watcher (``finalizer.kube``) with N pod subscriptions on one loop.

Each child runs ``warmup + duration`` seconds and reports its CPU time over the last ``duration``
seconds (steady state); the requests the fake logged in that same wall-clock window are attributed to
it. The sides run one after the other, so their requests never mix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from finalizer.bench.report import command_line, machine, render_table, write_json

NAMESPACE = "bench"
SIDES = ("upstream", "ours")


# -- children ------------------------------------------------------------------------------------


async def _upstream(
    kubeconfig: dict[str, Any], names: list[str], poll_interval: float, seconds: float
) -> dict[str, Any]:
    """Run the triggers for ``seconds``; their events by status (running pods: none) + examples."""
    from datetime import UTC, datetime

    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

    async def one(name: str) -> None:
        trigger = KubernetesPodTrigger(
            pod_name=name,
            pod_namespace=NAMESPACE,
            trigger_start_time=datetime.now(UTC),
            base_container_name="base",
            config_dict=kubeconfig,
            poll_interval=poll_interval,
        )
        async for event in trigger.run():  # a running pod: no event within the window
            status = str(event.payload.get("status"))
            events[status] += 1
            if status != "success" and status not in examples:
                examples[status] = str(event.payload.get("message", ""))[:500]
            return

    events: Counter[str] = Counter()
    examples: dict[str, str] = {}

    tasks = [asyncio.create_task(one(n)) for n in names]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"by_status": dict(events), "examples": examples}


async def _ours(kubeconfig: dict[str, Any], pods: list[tuple[str, str]], seconds: float) -> None:
    from finalizer.jobs import ClusterRef, PodRef
    from finalizer.kube import KubeClients

    clients = KubeClients()
    try:
        cluster = await clients.get(ClusterRef(config_dict=kubeconfig))
        async with contextlib.AsyncExitStack() as stack:
            for name, uid in pods:
                await stack.enter_async_context(
                    cluster.watch(PodRef(namespace=NAMESPACE, name=name, uid=uid))
                )
            await asyncio.sleep(seconds)
    finally:
        await clients.aclose()


def child_main(side: str, spec_path: str) -> int:
    """Run one side; print one JSON line: CPU seconds and the wall-clock window they cover."""
    spec = json.loads(Path(spec_path).read_text())
    warmup, duration = float(spec["warmup"]), float(spec["duration"])
    window: dict[str, float] = {}
    events: dict[str, Any] = {}

    async def main() -> None:
        async def measure() -> None:
            await asyncio.sleep(warmup)
            window["start"], window["cpu_start"] = time.time(), time.process_time()
            await asyncio.sleep(duration)
            window["end"], window["cpu_end"] = time.time(), time.process_time()

        probe = asyncio.create_task(measure())
        total = warmup + duration + 0.5
        if side == "upstream":
            events.update(
                await _upstream(
                    spec["kubeconfig"], [n for n, _ in spec["pods"]], spec["poll_interval"], total
                )
            )
        else:
            await _ours(spec["kubeconfig"], [(n, u) for n, u in spec["pods"]], total)
        await probe

    asyncio.run(main())
    print(
        json.dumps(
            {
                "window_start": window["start"],
                "window_end": window["end"],
                "cpu_seconds": window["cpu_end"] - window["cpu_start"],
                "max_rss_kib": _max_rss_kib(),
                "trigger_events": dict(events),
            }
        ),
        flush=True,
    )
    return 0


def _max_rss_kib() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- the bench process ---------------------------------------------------------------------------


def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def _run_side(side: str, spec_path: Path, home: Path, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "finalizer.bench.api_load", "--child", side, "--spec", str(spec_path)],
        env=_child_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} side failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _count(requests: list[Any], start: float, end: float) -> Counter[str]:
    return Counter(r.verb for r in requests if start <= r.time <= end)


def run(
    pods: int, duration: float, *, poll_interval: float = 2.0, warmup: float | None = None
) -> dict[str, Any]:
    """Both sides against one fake API with ``pods`` running pods; figures per side."""
    from finalizer.testing import FakeKube

    if warmup is None:
        warmup = max(3.0, 2 * poll_interval) + pods / 200
    with tempfile.TemporaryDirectory(prefix="kpo-bench-api-") as tmp, FakeKube.in_thread() as kube:
        home = Path(tmp)
        created = []
        for i in range(pods):
            name = f"bench-{i:05d}"
            pod = kube.create_pod(NAMESPACE, name=name, labels={"bench": "api-load"})
            kube.start(NAMESPACE, name)
            created.append((name, pod["metadata"]["uid"]))
        spec = {
            "kubeconfig": kube.kubeconfig,
            "pods": created,
            "poll_interval": poll_interval,
            "warmup": warmup,
            "duration": duration,
        }
        spec_path = home / "spec.json"
        spec_path.write_text(json.dumps(spec))
        sides: dict[str, Any] = {}
        for side in SIDES:
            kube.clear_requests()
            child = _run_side(side, spec_path, home, timeout=warmup + duration + 120)
            log = kube.requests
            counts = _count(log, child["window_start"], child["window_end"])
            window = child["window_end"] - child["window_start"]
            total = sum(counts.values())
            sides[side] = {
                "requests": total,
                "requests_by_verb": dict(counts),
                "requests_whole_run": len(log),  # start-up included (LIST, watch connect…)
                "requests_whole_run_by_verb": dict(Counter(r.verb for r in log)),
                "requests_per_pod_per_minute": total / pods / (window / 60),
                "cpu_seconds": child["cpu_seconds"],
                "cpu_seconds_per_minute": child["cpu_seconds"] / (window / 60),
                "max_rss_mib": child["max_rss_kib"] / 1024,
                "window_seconds": window,
                # Events the triggers yielded although every pod kept running (errors, timeouts): a
                # trigger that yielded stopped polling, so fewer requests than pods x polls.
                "trigger_events": child.get("trigger_events", {}),
            }
    return {
        "pods": pods,
        "duration": duration,
        "warmup": warmup,
        "poll_interval": poll_interval,
        "sides": sides,
        "description": {
            "upstream": "N KubernetesPodTrigger.run() on one loop (cncf-kubernetes), poll_interval as given",
            "ours": "kpo-finalizer shared watch (finalizer.kube) with N subscriptions on one loop",
        },
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        (
            side,
            s["requests"],
            s["requests_per_pod_per_minute"],
            s["cpu_seconds"],
            s["cpu_seconds_per_minute"],
            s["max_rss_mib"],
            s["requests_whole_run"],
            " ".join(f"{k}={v}" for k, v in sorted(s["requests_whole_run_by_verb"].items())),
        )
        for side, s in result["sides"].items()
    ]
    head = (
        f"{result['pods']} running pods watched for {result['duration']:g} s "
        f"(after {result['warmup']:g} s warm-up; upstream poll_interval {result['poll_interval']:g} s)"
    )
    table = render_table(
        (
            "side",
            "requests (window)",
            "req/pod/min",
            "CPU s",
            "CPU s/min",
            "max RSS MiB",
            "requests (whole run)",
            "whole run by verb",
        ),
        rows,
        3,
    )
    return f"{head}\n{table}"


def main(*, pods: int, duration: float, poll_interval: float, json_path: str | None) -> int:
    result = run(pods, duration, poll_interval=poll_interval)
    print(render(result))
    if json_path:
        payload = {"command": command_line(), "machine": machine(), **result}
        print(f"JSON written to {write_json(json_path, payload)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m finalizer.bench.api_load")
    parser.add_argument("--child", choices=SIDES, required=True)
    parser.add_argument("--spec", required=True)
    args = parser.parse_args()
    sys.exit(child_main(args.child, args.spec))
