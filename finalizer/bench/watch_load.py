"""``python -m finalizer.bench.watch_load``: what the shared pod watcher costs at N watched pods.

The fake Kubernetes API server runs in this process (a thread) and logs every request; the
watcher runs in a child process, so the CPU and memory it reports are its own. The child
subscribes to N running pods, waits until every subscription knows its pod, lets ``warmup``
seconds pass, then measures ``duration`` seconds of steady state:

* Kubernetes API requests per watched pod per minute (the fake's log, over that window),
* CPU seconds of the watcher process per pod per minute (``time.process_time``),
* watch connections opened (whole run, and in the window), RSS per subscribed pod.

Idle running pods cost almost nothing, so ``churn`` adds pod updates per second (annotation
merge patches sent by this process, spread over the watched pods and ``noise`` pods that
match the selector but nobody subscribed to) to price each watch event; the churn patches
are not counted as the watcher's requests.

``run(pods, duration) -> dict`` is the entry point for ``kpo-finalizer bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

NAMESPACE = "bench-watch"
LABELS = {"bench": "watch-load"}


# --- child: the watcher under test ----------------------------------------------------------------


def _rss_kib() -> int:
    """Current resident set size (Linux ``/proc``; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


async def _watch(spec: dict[str, Any]) -> dict[str, Any]:
    from finalizer.jobs import ClusterRef
    from finalizer.kube import KubeClients, KubeSettings

    settings = KubeSettings(watch_timeout_seconds=int(spec["watch_timeout_seconds"]))
    warmup, duration = float(spec["warmup"]), float(spec["duration"])
    async with KubeClients(settings) as clients:
        cluster = await clients.get(ClusterRef(config_dict=spec["kubeconfig"]))
        rss_before = _rss_kib()
        started = time.time()
        async with contextlib.AsyncExitStack() as stack:
            subs = [
                await stack.enter_async_context(
                    cluster.watcher.subscribe(NAMESPACE, name, uid, spec["label_selector"])
                )
                for name, uid in spec["pods"]
            ]
            for sub in subs:
                await sub.wait(lambda pod: True, timeout=120)
            ready = time.time()
            known = sum(sub.known and not sub.gone for sub in subs)
            await asyncio.sleep(warmup)
            window_start, cpu_start = time.time(), time.process_time()
            await asyncio.sleep(duration)
            window_end, cpu_end = time.time(), time.process_time()
            rss_after = _rss_kib()
            stats = {key: vars(value) for key, value in cluster.watcher.stats().items()}
    return {
        "started": started,
        "ready": ready,
        "known": known,
        "window_start": window_start,
        "window_end": window_end,
        "cpu_seconds": cpu_end - cpu_start,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "stats": stats,
    }


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = asyncio.run(_watch(spec))
    print(json.dumps(result), flush=True)
    return 0


# --- parent: the fake server, the pods, the churn, the accounting --------------------------------


def _churn(port: int, token: str, names: list[str], per_second: float, stop: threading.Event) -> None:
    """Merge-patch an annotation of a random pod ``per_second`` times a second until ``stop``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/merge-patch+json", "Authorization": f"Bearer {token}"}
    interval, tick, next_at = 1.0 / per_second, 0, time.monotonic()
    try:
        while not stop.is_set():
            tick += 1
            body = json.dumps({"metadata": {"annotations": {"bench/tick": str(tick)}}})
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/{random.choice(names)}"
            conn.request("PATCH", path, body, headers)
            conn.getresponse().read()
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        conn.close()


def run(
    pods: int,
    duration: float,
    *,
    warmup: float = 3.0,
    watch_timeout_seconds: int = 300,
    bookmark_interval: float = 60.0,
    churn: float = 0.0,
    noise: int = 0,
) -> dict[str, Any]:
    """Watch ``pods`` running pods for ``duration`` seconds of steady state; the figures as a dict."""
    from finalizer.testing import FakeKube

    if pods < 1 or duration <= 0 or churn < 0 or noise < 0:
        raise ValueError("pods must be >= 1, duration > 0, churn and noise >= 0")
    with (
        FakeKube.in_thread(bookmark_interval=bookmark_interval) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        refs: list[tuple[str, str]] = []
        for i in range(pods):
            name = f"watched-{i:05d}"
            fake.create_pod(NAMESPACE, name=name, labels=LABELS)
            refs.append((name, str(fake.start(NAMESPACE, name)["metadata"]["uid"])))
        noise_names = [f"noise-{i:05d}" for i in range(noise)]
        for name in noise_names:
            fake.create_pod(NAMESPACE, name=name, labels=LABELS)
            fake.start(NAMESPACE, name)
        fake.clear_requests()
        spec = {
            "kubeconfig": fake.kubeconfig,
            "pods": refs,
            "label_selector": ",".join(f"{k}={v}" for k, v in LABELS.items()),
            "warmup": warmup,
            "duration": duration,
            "watch_timeout_seconds": watch_timeout_seconds,
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        stop = threading.Event()
        targets = [n for n, _ in refs] + noise_names
        churner = threading.Thread(
            target=_churn, args=(fake.port, fake.token, targets, churn, stop), name="churn", daemon=True
        )
        if churn > 0:
            churner.start()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "finalizer.bench.watch_load", "--child", str(spec_path)],
                capture_output=True,
                text=True,
                env=env,
                timeout=warmup + duration + 300,
                check=False,
            )
        finally:
            stop.set()
            if churner.is_alive():
                churner.join(timeout=15)
        if proc.returncode != 0:
            raise RuntimeError(f"watcher child failed ({proc.returncode}): {proc.stderr[-2000:]}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        requests = fake.requests
    result = summarize(pods, duration, child, [(r.verb, r.time) for r in requests], watch_timeout_seconds)
    return {**result, "noise_pods": noise, "churn_per_second": churn}


def summarize(
    pods: int,
    duration: float,
    child: dict[str, Any],
    requests: list[tuple[str, float]],
    watch_timeout_seconds: int,
) -> dict[str, Any]:
    """The figures from the child's report and the fake's request log (pure)."""
    start, end = float(child["window_start"]), float(child["window_end"])
    window = max(end - start, 1e-9)
    minutes = window / 60.0
    # The churn's PATCH requests are load this benchmark generates, not the watcher's.
    updates = sum(1 for verb, at in requests if verb == "patch" and start <= at <= end)
    requests = [(verb, at) for verb, at in requests if verb != "patch"]
    in_window = [verb for verb, at in requests if start <= at <= end]
    startup = [verb for verb, at in requests if at < start]
    # One WATCH per mean server timeout (T..1.5T) is the steady-state cost, shared by every pod.
    modelled = 60.0 / (watch_timeout_seconds * 1.25) / pods
    rss_delta = max(0, int(child["rss_after_kib"]) - int(child["rss_before_kib"]))
    cpu = float(child["cpu_seconds"])
    return {
        "pods": pods,
        "duration_s": round(window, 3),
        "pods_known": child["known"],
        "startup_s": round(float(child["ready"]) - float(child["started"]), 3),
        "startup_requests": {verb: startup.count(verb) for verb in sorted(set(startup))},
        "requests_in_window": len(in_window),
        "requests_per_pod_per_min": len(in_window) / pods / minutes,
        "modelled_requests_per_pod_per_min": modelled,
        "watch_connections_opened": sum(verb == "watch" for verb, _ in requests),
        "watch_connections_in_window": in_window.count("watch"),
        "cpu_seconds": round(cpu, 4),
        "cpu_seconds_per_pod_per_min": cpu / pods / minutes,
        "rss_kib_per_pod": round(rss_delta / pods, 2),
        "pod_updates_in_window": updates,
        "cpu_us_per_pod_update": cpu / updates * 1e6 if updates else None,
        "watch_timeout_seconds": watch_timeout_seconds,
        "watcher_stats": child["stats"],
    }


def render(result: dict[str, Any]) -> str:
    from finalizer.bench.report import render_table

    per_update = result["cpu_us_per_pod_update"]
    rows = [
        ("pods watched", result["pods"]),
        ("steady-state window (s)", result["duration_s"]),
        ("startup: all pods known (s)", result["startup_s"]),
        ("startup requests", json.dumps(result["startup_requests"])),
        ("API requests in window", result["requests_in_window"]),
        ("API requests / pod / min (measured)", f"{result['requests_per_pod_per_min']:.6f}"),
        (
            "API requests / pod / min (1 watch per timeout)",
            f"{result['modelled_requests_per_pod_per_min']:.6f}",
        ),
        ("watch connections opened (whole run)", result["watch_connections_opened"]),
        ("CPU s in window", f"{result['cpu_seconds']:.4f}"),
        ("CPU s / pod / min", f"{result['cpu_seconds_per_pod_per_min']:.7f}"),
        ("RSS KiB / pod", result["rss_kib_per_pod"]),
        ("pod updates in window (churn)", result["pod_updates_in_window"]),
        ("CPU us / pod update", f"{per_update:.1f}" if per_update is not None else None),
    ]
    return render_table(("figure", "value"), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finalizer.bench.watch_load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of steady state measured")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--watch-timeout", type=int, default=300, help="server-side timeoutSeconds of a WATCH"
    )
    parser.add_argument("--churn", type=float, default=0.0, help="pod updates per second during the run")
    parser.add_argument("--noise", type=int, default=0, help="matching pods nobody subscribes to")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    result = run(
        args.pods,
        args.duration,
        warmup=args.warmup,
        watch_timeout_seconds=args.watch_timeout,
        churn=args.churn,
        noise=args.noise,
    )
    print(render(result))
    if args.json_path:
        from finalizer.bench.report import machine, write_json

        command = " ".join(
            ["python -m finalizer.bench.watch_load", *(argv if argv is not None else sys.argv[1:])]
        )
        write_json(args.json_path, {"command": command, "machine": machine(), **result})
        print(f"\nwritten: {args.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
