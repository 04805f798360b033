"""``kpo-finalizer status``: render the ledger's ``StatusReport`` as text or JSON, once or watching.

Exit codes: 0 a report was printed; 3 there is no ledger at that place (``LedgerNotFoundError``);
4 the ledger could not be read (unreachable, refused, newer schema). With ``--watch`` a failed
read is printed and the next one tried, until Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

import anyio

from finalizer.exceptions import ConfigurationError, LedgerError
from finalizer.ledger.readonly import LedgerNotFoundError, read_ledger
from finalizer.ledger.summary import JobStatus, StatusReport, summarize

EXIT_OK = 0
EXIT_NO_LEDGER = 3
EXIT_UNREADABLE = 4


def human_age(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``2h07m``, ``3d04h``: ages at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _job_line(job: JobStatus) -> str:
    owner = job.owner[:8] if job.owner else "none"
    return f"{job.task}, pod {job.pod}, step {job.step}, {human_age(job.age)} old, owner {owner}"


def render_text(report: StatusReport) -> str:
    """The report for a terminal; reasons are bounded, payloads never read."""
    lines = [
        f"kpo-finalizer ledger {report.url} (schema v{report.schema_version}) "
        f"at {report.at:%Y-%m-%d %H:%M:%S}Z",
        f"Instances ({len(report.instances)}; alive = heartbeat within {report.stale_threshold:g}s):",
    ]
    for i in report.instances:
        state = "alive" if i.alive else "DEAD"
        lines.append(
            f"  {i.host} pid {i.pid}: heartbeat {human_age(i.heartbeat_age)} ago, {state}, "
            f"{i.jobs_in_flight} job(s) in flight  [{i.id[:8]}]"
        )
    if not report.instances:
        lines.append("  none registered (no finalizer running against this ledger)")
    lines.append(
        f"Jobs: {report.total_jobs} in total, {report.in_flight} in flight ({report.in_flight_live} on "
        f"live instances, {report.in_flight_orphaned} awaiting adoption from dead ones, "
        f"{report.parked} parked)"
    )
    for count in report.jobs:
        lines.append(f"  {count.step:<22} {count.outcome or '-':<10} {count.count}")
    oldest = report.oldest_in_flight
    lines.append(f"Oldest in flight: {_job_line(oldest) if oldest else 'none'}")
    lines.append(f"Parked by a drain: {report.parked}")
    lines.extend(f"  {_job_line(job)}" for job in report.parked_jobs)
    handed = "not recorded by this ledger" if report.handed_over is None else str(report.handed_over)
    lines.append(f"Handed to the worker: {handed}")
    lines.append(f"Last failures: {len(report.failures) or 'none'}")
    for job in report.failures:
        why = job.reason or job.error or ""
        lines.append(f"  {job.task}, pod {job.pod}: {job.outcome or 'error'}: {why}")
    if report.finalizing_triggers is not None:
        lines.append(f"kpo-finalizer trigger rows in Airflow's trigger table: {report.finalizing_triggers}")
    elif report.finalizing_triggers_error is not None:
        why = report.finalizing_triggers_error
        lines.append(f"kpo-finalizer trigger rows in Airflow's trigger table: unknown ({why})")
    return "\n".join(lines)


def render_json(report: StatusReport) -> str:
    """One line per report (``--watch --json`` is JSON Lines)."""
    return json.dumps(report.to_dict(), sort_keys=True)


async def build_report(url: str, *, stale_threshold: float, within: float = 10.0) -> StatusReport:
    return summarize(await read_ledger(url, within=within), stale_threshold=stale_threshold)


#: Counts Airflow's FinalizingPodTrigger and FinalizingJobTrigger rows (``status --airflow-db``);
#: raises with a printable reason.
TriggerCounter = Callable[[], int]


def _with_trigger_count(report: StatusReport, count: TriggerCounter | None) -> StatusReport:
    if count is None:
        return report
    try:
        return dataclasses.replace(report, finalizing_triggers=count())
    except Exception as exc:  # the counter's own error, already worded for the user
        return dataclasses.replace(report, finalizing_triggers_error=str(exc))


def status_once(
    url: str,
    *,
    stale_threshold: float,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    timeout: float = 10.0,
    count_triggers: TriggerCounter | None = None,
) -> int:
    """Print one report (or why there is none); the exit code."""
    try:
        report = anyio.run(lambda: build_report(url, stale_threshold=stale_threshold, within=timeout))
        report = _with_trigger_count(report, count_triggers)
    except LedgerNotFoundError as exc:
        print(
            f"kpo-finalizer status: {exc}. No finalizer has written there yet, or the triggerer uses "
            "another state_dir / ledger_url (see kpo-finalizer check-config).",
            file=err,
        )
        return EXIT_NO_LEDGER
    except (LedgerError, ConfigurationError) as exc:
        print(f"kpo-finalizer status: {exc}", file=err)
        return EXIT_UNREADABLE
    print(render_json(report) if as_json else render_text(report), file=out, flush=True)
    return EXIT_OK


def run_status(
    url: str,
    *,
    stale_threshold: float,
    as_json: bool = False,
    watch: float | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    count_triggers: TriggerCounter | None = None,
) -> int:
    """``kpo-finalizer status``: once, or every ``watch`` seconds until interrupted."""
    stdout, stderr = out or sys.stdout, err or sys.stderr

    def once() -> int:
        return status_once(
            url,
            stale_threshold=stale_threshold,
            as_json=as_json,
            out=stdout,
            err=stderr,
            count_triggers=count_triggers,
        )

    if watch is None:
        return once()
    while True:
        once()
        if not as_json:
            print("", file=stdout, flush=True)
        sleep(watch)
