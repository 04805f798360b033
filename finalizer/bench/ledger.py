"""Ledger throughput: ``python -m finalizer.bench.ledger [--url URL] --jobs 1000 --concurrency 64``.

The ledger alone, with the writes one finalization makes and nothing else (no Kubernetes, no
Execution API), so jobs/s here is the ceiling the ledger puts on the pipeline. A finalization
writes its job row three times (ledger decision 7): ``submit``, ``XCOM_PERSISTED`` (a small XCom
and the outcome, with the time the completion was seen) and ``DONE`` (the outcome, with the times
of the idempotent steps between). ``WRITES`` below is that sequence; every step gets its time.
Without ``--url`` a fresh SQLite file in a temporary directory is used.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from finalizer.bench.report import command_line, flat_table, machine, percentile, write_json
from finalizer.jobs import ClusterRef, JobSpec, Outcome, OutcomeKind, PodRef, Step, TaskInstanceRef
from finalizer.ledger.store import Ledger

#: The writes after ``submit``, as the pipeline makes them: (step written, steps whose times ride along).
WRITES: tuple[tuple[Step, tuple[Step, ...]], ...] = (
    (Step.XCOM_PERSISTED, (Step.COMPLETION_SEEN,)),
    (Step.DONE, (Step.XCOM_PUSHED, Step.DIAGNOSTICS_CAPTURED, Step.SIDECAR_STOPPED, Step.POD_CLEANED)),
)
#: Job-row writes per finalization: ``submit`` and each of ``WRITES``.
WRITES_PER_JOB = 1 + len(WRITES)
OUTCOME = Outcome(kind=OutcomeKind.SUCCESS, reason="bench", exit_code=0)


def bench_spec(run_id: str, n: int) -> JobSpec:
    """Job ``n`` of one benchmark run (``run_id`` keeps runs apart in a shared database)."""
    return JobSpec(
        ti=TaskInstanceRef(id=f"{run_id}-{n}", dag_id="bench", task_id=f"t{n}", run_id=run_id),
        cluster=ClusterRef(),
        pod=PodRef(namespace="bench", name=f"pod-{n}", uid=f"{run_id}-uid-{n}"),
    )


def bench_xcom(n: int) -> dict[str, Any]:
    """The small XCom job ``n`` persists."""
    return {"n": n, "rows": list(range(10))}


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
                rec = await ledger.submit(bench_spec(run_id, n), owner)
                for step, passed in WRITES:
                    reached = dict.fromkeys(passed, datetime.now(UTC))
                    if step is Step.XCOM_PERSISTED:
                        rec = await ledger.advance(
                            rec, step, xcom=bench_xcom(n), outcome=OUTCOME, reached=reached
                        )
                    else:
                        rec = await ledger.advance(rec, step, outcome=OUTCOME, reached=reached)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(jobs):
                tg.start_soon(one, n)
        elapsed = time.perf_counter() - started
        await ledger.unregister(owner)
    return {
        "dialect": ledger.dialect,
        "run_id": run_id,
        "jobs": jobs,
        "concurrency": concurrency,
        "writes_per_job": WRITES_PER_JOB,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed, 1),
        "writes_per_s": round(jobs * WRITES_PER_JOB / elapsed, 1),
        "job_ms_p50": _rounded(percentile(latencies, 50)),
        "job_ms_p95": _rounded(percentile(latencies, 95)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finalizer.bench.ledger", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--url", help="ledger URL (default: a fresh SQLite file)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/ledger.sqlite3"
        result = anyio.run(run, url, args.jobs, args.concurrency)
    print(flat_table(result))
    if args.json_path:
        payload = {"command": command_line(argv, parser.prog), "machine": machine(), **result}
        print(f"JSON written to {write_json(args.json_path, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
