"""``python -m finalizer.bench.finalize``: the finalization pipeline alone against the fake cluster.

N pods run (XCom sidecar, ``return.json`` written) on the wire-faithful fake API server, served
from its own thread with ``--latency-ms`` added to every request. N jobs go through the real
pipeline (real ``finalizer.kube`` clients, shared watch, exec XCom reads, the real ledger on a
SQLite file) with ``--concurrency`` slots; XCom goes to an in-process store (this measures the
finalizer, not Airflow). Once every job is waiting on the watch, every base container is ended;
we report throughput (finalizations/s from the first container end to the last job done) and
completion → done latency per pod (p50/p95/max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio

from api_client.store import XComRef
from finalizer.bench.report import command_line, latency_summary, machine, render_table, write_json
from finalizer.config import FinalizerConfig
from finalizer.jobs import ClusterRef, FinishSettings, JobSpec, OutcomeKind, PodRef, Step, TaskInstanceRef
from finalizer.kube.clients import KubeClients
from finalizer.kube.config import KubeSettings
from finalizer.ledger import Ledger
from finalizer.limiter import ClusterLimiter
from finalizer.loops import EventLoopChoice, loop_factory, loop_name
from finalizer.metrics import FinalizerMetrics
from finalizer.pipeline import Pipeline
from finalizer.retry import classify
from finalizer.seams import ClusterOps
from finalizer.testing.fake_kube import FakeKube
from finalizer.wiring import StoreSink

NAMESPACE = "bench"


class MemoryXComStore:
    """An in-process ``api_client.XComStore`` (the benchmark measures the finalizer, not Airflow)."""

    def __init__(self) -> None:
        self.values: dict[XComRef, Any] = {}

    async def set(self, ref: XComRef, value: Any, *, mapped_length: int | None = None) -> None:
        self.values[ref] = json.loads(json.dumps(value))

    async def get(self, ref: XComRef) -> Any:
        from api_client.exceptions import XComNotFoundError

        if ref not in self.values:
            raise XComNotFoundError(f"no XCom {ref}")
        return self.values[ref]

    async def delete(self, ref: XComRef) -> None:
        self.values.pop(ref, None)


class FakeProcess:
    """The fake API server in a child process, driven over a pipe.

    In a thread of this process it would share our GIL: every socket call of the finalizer would
    wait behind the fake's CPU work (the GIL switch interval is 5 ms), measuring the GIL, not us.
    ``time.monotonic`` is system-wide on Linux, so the child's timestamps compare with ours.
    """

    def __init__(self, latency: float, event_loop: EventLoopChoice = "auto") -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_fake, args=(child, latency, event_loop), daemon=True)

    def __enter__(self) -> FakeProcess:
        self._proc.start()
        self.kubeconfig: dict[str, Any] = self.call("kubeconfig")
        return self

    def __exit__(self, *exc: object) -> None:
        with suppress(OSError):
            self._conn.send(("stop", ()))
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()

    def call(self, op: str, *args: Any) -> Any:
        self._conn.send((op, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"fake-kube child failed on {op}: {value}")
        return value


def _serve_fake(conn: Any, latency: float, event_loop: EventLoopChoice) -> None:
    """Child process: a FakeKube on its own loop thread; answer commands until told to stop."""
    with FakeKube.in_thread(bookmark_interval=1.0, loop_factory=loop_factory(event_loop)) as kube:
        kube.latency = latency
        while True:
            op, args = conn.recv()
            if op == "stop":
                return
            try:
                conn.send((True, _fake_op(kube, op, args)))
            except Exception as exc:
                conn.send((False, repr(exc)))


def _fake_op(kube: FakeKube, op: str, args: tuple[Any, ...]) -> Any:
    if op == "kubeconfig":
        return kube.kubeconfig
    if op == "create_running":
        (count,) = args
        pods = []
        for i in range(count):
            pod = kube.create_pod(NAMESPACE, name=f"bench-{i}")
            kube.start(NAMESPACE, f"bench-{i}")
            kube.write_xcom(NAMESPACE, f"bench-{i}", json.dumps({"i": i, "payload": "x" * 64}))
            pods.append(pod)
        return pods
    if op == "terminate_all":
        ended = {}
        for name in args[0]:
            ended[name] = (time.monotonic(), time.time())
            kube.terminate(NAMESPACE, name, exit_code=0)
        return ended
    if op == "cpu":
        return time.process_time()
    if op == "stats":
        return {"pods_left": len(kube.list_pods(NAMESPACE)), "requests": sum(kube.request_counts().values())}
    raise ValueError(f"unknown op {op}")


def _spec(i: int, pod: dict[str, Any], kubeconfig: dict[str, Any]) -> JobSpec:
    return JobSpec(
        ti=TaskInstanceRef(id=f"ti-{i}", dag_id="bench", task_id="kpo", run_id="run", map_index=i),
        cluster=ClusterRef(config_dict=kubeconfig),
        pod=PodRef(namespace=NAMESPACE, name=pod["metadata"]["name"], uid=pod["metadata"]["uid"]),
        settings=FinishSettings(log_tail_lines=20),
    )


async def _run(kube: FakeProcess, pods: int, concurrency: int, ledger_url: str) -> dict[str, Any]:
    kubeconfig = kube.kubeconfig
    created = await anyio.to_thread.run_sync(kube.call, "create_running", pods)
    specs = [_spec(i, pod, kubeconfig) for i, pod in enumerate(created)]
    store = MemoryXComStore()
    config = FinalizerConfig(state_dir=Path(tempfile.gettempdir()), concurrency_per_cluster=concurrency)
    ledger = await Ledger.connect(ledger_url)
    clients = KubeClients(KubeSettings(max_concurrency=concurrency))
    metrics = FinalizerMetrics()
    done_at: dict[str, float] = {}
    outcomes: dict[str, OutcomeKind] = {}
    try:
        owner = await ledger.register_instance("bench", 0)
        cluster = await clients.get(specs[0].cluster)

        async def cluster_for(spec: JobSpec) -> ClusterOps:
            return cluster

        pipeline = Pipeline(
            config=config,
            cluster_for=cluster_for,
            ledger=ledger,
            xcoms=StoreSink(store),
            classify=classify,
            slots=ClusterLimiter(concurrency, metrics),
            metrics=metrics,
        )

        async def one(spec: JobSpec) -> None:
            rec = await ledger.submit(spec, owner)
            outcome = await pipeline.run(spec, rec)
            done_at[spec.pod.name] = time.monotonic()
            outcomes[spec.pod.name] = outcome.kind

        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(one, spec)
            deadline = time.monotonic() + 60
            while cluster.watcher.subscribed < pods:  # every job waits on the shared watch
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {cluster.watcher.subscribed}/{pods} jobs subscribed")
                await anyio.sleep(0.01)
            names = [spec.pod.name for spec in specs]
            cpu_before = (time.process_time(), await anyio.to_thread.run_sync(kube.call, "cpu"))
            ended: dict[str, tuple[float, float]] = await anyio.to_thread.run_sync(
                kube.call, "terminate_all", names
            )
        cpu_after = (time.process_time(), await anyio.to_thread.run_sync(kube.call, "cpu"))
        noticed = await _noticed_latencies(ledger, specs, {name: wall for name, (_, wall) in ended.items()})
    finally:
        await clients.aclose()
        await ledger.aclose()
    ended_at = {name: mono for name, (mono, _) in ended.items()}
    first, last = min(ended_at.values()), max(done_at.values())
    latencies = [done_at[name] - ended_at[name] for name in done_at]
    ok = sum(1 for kind in outcomes.values() if kind is OutcomeKind.SUCCESS)
    xcoms_ok = sum(
        1 for i in range(pods) if store.values.get(StoreSink.ref(specs[i], "return_value"), {}).get("i") == i
    )
    summary = latency_summary(latencies)
    stats = await anyio.to_thread.run_sync(kube.call, "stats")
    ours_ms = 1000 * (cpu_after[0] - cpu_before[0]) / pods
    return {
        "pods": pods,
        "concurrency": concurrency,
        "succeeded": ok,
        "xcoms_correct": xcoms_ok,
        "pods_left": stats["pods_left"],
        "elapsed_s": round(last - first, 3),
        "throughput_per_s": round(pods / (last - first), 1) if last > first else None,
        "latency_p50_s": summary["p50"],
        "latency_p95_s": summary["p95"],
        "latency_max_s": summary["max"],
        # Container end -> the shared watch showed it to the job (before any wait for a slot).
        "noticed_p50_s": noticed["p50"],
        "noticed_p95_s": noticed["p95"],
        "requests": stats["requests"],
        # CPU per finalized pod from the first container end to the last job done (all threads):
        # ours = this process (pipeline, watch, ledger thread); fake = the API server's process
        # (its container-ending work included). 1000 / ours_ms = jobs per second one core can carry.
        "cpu_ms_per_job_ours": round(ours_ms, 3),
        "cpu_ms_per_job_fake": round(1000 * (cpu_after[1] - cpu_before[1]) / pods, 3),
        # What this instance could finish per second on a core of its own with the API for free.
        "one_core_per_s": round(1000 / ours_ms, 1) if ours_ms > 0 else None,
        # Mean wall time per call of each step's I/O (ms), waits for the loop included.
        "step_ms_mean": {
            step: round(1000 * metrics.step_seconds.total(step=step) / n, 2)
            for step in ("ledger", "read_xcom", "push_xcom", "diagnostics", "stop_sidecar", "cleanup")
            if (n := metrics.step_seconds.count(step=step))
        },
    }


async def _noticed_latencies(
    ledger: Ledger, specs: list[JobSpec], ended_wall: dict[str, float]
) -> dict[str, float | None]:
    """From each job's recorded COMPLETION_SEEN time (wall clock, same host as the fake)."""
    seen = []
    for spec in specs:
        rec = await ledger.get(spec.key)
        at = rec.step_times.get(Step.COMPLETION_SEEN) if rec is not None else None
        if at is not None:
            seen.append(at.timestamp() - ended_wall[spec.pod.name])
    return latency_summary(seen)


def run(
    pods: int = 500,
    latency_ms: float = 0.0,
    concurrency: int = 16,
    ledger_url: str | None = None,
    event_loop: EventLoopChoice = "auto",
) -> dict[str, Any]:
    """One benchmark run; returns a flat dict of figures (also what ``--json`` writes).

    ``event_loop`` picks our loop as ``FinalizerConfig.event_loop`` does, and the fake's alike.
    """
    factory = loop_factory(event_loop)
    with tempfile.TemporaryDirectory(prefix="kpof-bench-") as tmp:
        url = ledger_url or f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}"
        with (
            FakeProcess(latency_ms / 1000.0, event_loop) as kube,
            asyncio.Runner(loop_factory=factory) as runner,
        ):
            result = runner.run(_run(kube, pods, concurrency, url))
            result["event_loop"] = loop_name(runner.get_loop())
    result["latency_ms"] = latency_ms
    result["ledger"] = "sqlite file" if ledger_url is None else ledger_url.split(":", 1)[0]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finalizer.bench.finalize", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--ledger-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="as FinalizerConfig.event_loop",
    )
    args = parser.parse_args(argv)
    rows = [run(args.pods, args.latency_ms, c, args.ledger_url, args.event_loop) for c in args.concurrency]
    headers = [
        "event_loop",
        "pods",
        "latency_ms",
        "concurrency",
        "throughput_per_s",
        "latency_p50_s",
        "latency_p95_s",
        "latency_max_s",
        "noticed_p95_s",
        "cpu_ms_per_job_ours",
        "cpu_ms_per_job_fake",
        "one_core_per_s",
        "succeeded",
        "xcoms_correct",
        "pods_left",
    ]
    print(render_table(headers, [[r[h] for h in headers] for r in rows], digits=3))
    if args.json_path:
        payload = {"command": command_line(argv, parser.prog), "machine": machine(), "runs": rows}
        path = write_json(args.json_path, payload)
        print(f"JSON written to {path}")
    return 0 if all(r["succeeded"] == r["pods"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
