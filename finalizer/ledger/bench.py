"""Ledger throughput: ``python -m finalizer.ledger.bench [--url URL] --jobs 1000 --concurrency 64``.

Each job makes the writes one finalization makes (submit + 7 ``advance`` calls, one carrying a
small XCom), so jobs/s here is the ceiling the ledger puts on the pipeline. Without ``--url`` a
fresh SQLite file in a temporary directory is used.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from typing import Any

import anyio

from finalizer.jobs import ClusterRef, JobSpec, PodRef, Step, TaskInstanceRef
from finalizer.ledger.store import Ledger

STEPS = (
    Step.COMPLETION_SEEN,
    Step.XCOM_PERSISTED,
    Step.XCOM_PUSHED,
    Step.DIAGNOSTICS_CAPTURED,
    Step.SIDECAR_STOPPED,
    Step.POD_CLEANED,
    Step.DONE,
)


def _spec(run: str, n: int) -> JobSpec:
    return JobSpec(
        ti=TaskInstanceRef(id=f"{run}-{n}", dag_id="bench", task_id=f"t{n}", run_id=run),
        cluster=ClusterRef(),
        pod=PodRef(namespace="bench", name=f"pod-{n}", uid=f"{run}-uid-{n}"),
    )


async def run(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """Run the benchmark; returns jobs/s, writes/s and per-job latency percentiles (ms)."""
    latencies: list[float] = []
    run_id = f"bench{time.time_ns()}"
    async with await Ledger.connect(url) as ledger:
        owner = await ledger.register_instance(socket.gethostname(), os.getpid())
        limiter = anyio.Semaphore(concurrency)

        async def one(n: int) -> None:
            async with limiter:
                started = time.perf_counter()
                rec = await ledger.submit(_spec(run_id, n), owner)
                for step in STEPS:
                    if step is Step.XCOM_PERSISTED:
                        rec = await ledger.advance(rec, step, xcom={"n": n, "rows": list(range(10))})
                    else:
                        rec = await ledger.advance(rec, step)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(jobs):
                tg.start_soon(one, n)
        elapsed = time.perf_counter() - started
        await ledger.unregister(owner)
    latencies.sort()
    return {
        "dialect": ledger.dialect,
        "jobs": jobs,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed, 1),
        "writes_per_s": round(jobs * (len(STEPS) + 1) / elapsed, 1),
        "job_ms_p50": round(latencies[len(latencies) // 2], 2),
        "job_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="ledger URL (default: a fresh SQLite file)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/ledger.sqlite3"
        result = anyio.run(run, url, args.jobs, args.concurrency)
    print("  ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
