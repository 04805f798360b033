"""What ``kpo-finalizer status`` reports, decided from ledger rows: a pure ``rows → StatusReport``.

The rows come from ``finalizer.ledger.readonly`` (read-only queries, no payloads). Everything
here is plain data and arithmetic on it, so every rule (alive or not, parked or orphaned) has a
table test without a database.

Who holds an unfinished job, by its ``owner``:
- a live instance (heartbeat within the stale threshold): in flight there;
- an instance whose heartbeat is older than the threshold: it died, the job waits for adoption;
- no instance row, or no owner: the owner drained (``Finalizer.drain`` unregisters, so its jobs
  are adoptable at once) or released it: the job is parked until a finalizer starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from finalizer.jobs import Step

#: Failure kinds shown under "last failures" (besides any job that recorded an error).
FAILURE_KINDS = frozenset({"failed", "fail_fast"})


@dataclass(frozen=True, slots=True)
class InstanceRow:
    id: str
    host: str
    pid: int
    started: datetime
    heartbeat: datetime


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job's coordinates and progress: never its spec or payload (they can hold secrets)."""

    key: str
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    namespace: str
    pod_name: str
    step: int
    owner: str | None
    created_at: datetime
    updated_at: datetime
    #: The outcome's kind and (bounded) reason, and the recorded error, where there are.
    outcome_kind: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerRows:
    """What the read-only queries return."""

    url: str
    #: The database's clock when read (PostgreSQL server clock; the local UTC clock on SQLite).
    now: datetime
    schema_version: int
    instances: Sequence[InstanceRow]
    #: (step, outcome kind or None, count) for every job.
    step_counts: Sequence[tuple[int, str | None, int]]
    #: (owner, count) of unfinished jobs.
    in_flight_by_owner: Sequence[tuple[str | None, int]]
    oldest_in_flight: JobRow | None
    #: Unfinished jobs whose owner has no instance row (or none at all), oldest first, bounded.
    parked: Sequence[JobRow]
    #: Jobs handed to the worker; None while the ledger records no such mark.
    handed_over: int | None
    #: The last failed jobs, newest first, bounded.
    failures: Sequence[JobRow]


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    id: str
    host: str
    pid: int
    heartbeat_age: float
    alive: bool
    jobs_in_flight: int


@dataclass(frozen=True, slots=True)
class JobStatus:
    key: str
    task: str
    pod: str
    step: str
    owner: str | None
    age: float
    outcome: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StepCount:
    step: str
    outcome: str | None
    count: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    url: str
    at: datetime
    schema_version: int
    stale_threshold: float
    instances: list[InstanceStatus]
    jobs: list[StepCount]
    total_jobs: int
    in_flight: int
    #: Unfinished jobs held by a live instance / by a dead one (awaiting adoption) / parked.
    in_flight_live: int
    in_flight_orphaned: int
    parked: int
    oldest_in_flight: JobStatus | None
    parked_jobs: list[JobStatus]
    handed_over: int | None
    failures: list[JobStatus] = field(default_factory=list)
    #: ``status --airflow-db``: kpo-finalizer trigger rows in Airflow's trigger table, or why unknown.
    finalizing_triggers: int | None = None
    finalizing_triggers_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (times as ISO 8601)."""
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def step_name(step: int) -> str:
    """``XCOM_PUSHED`` for 30; the number itself for a step this code does not know (newer ledger)."""
    try:
        return Step(step).name
    except ValueError:
        return str(step)


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _job(row: JobRow, now: datetime) -> JobStatus:
    map_part = f"[{row.map_index}]" if row.map_index >= 0 else ""
    return JobStatus(
        key=row.key,
        task=f"{row.dag_id}.{row.task_id}{map_part} run {row.run_id} try {row.try_number}",
        pod=f"{row.namespace}/{row.pod_name}",
        step=step_name(row.step),
        owner=row.owner,
        age=_age(now, row.created_at),
        outcome=row.outcome_kind,
        reason=row.reason,
        error=row.error,
    )


def summarize(rows: LedgerRows, *, stale_threshold: float) -> StatusReport:
    """The report for ``rows``: alive = heartbeat no older than ``stale_threshold`` seconds."""
    now = rows.now
    held: Mapping[str | None, int] = dict(rows.in_flight_by_owner)
    instances = [
        InstanceStatus(
            id=i.id,
            host=i.host,
            pid=i.pid,
            heartbeat_age=_age(now, i.heartbeat),
            alive=_age(now, i.heartbeat) <= stale_threshold,
            jobs_in_flight=held.get(i.id, 0),
        )
        for i in sorted(rows.instances, key=lambda i: i.started)
    ]
    alive = {i.id for i in instances if i.alive}
    known = {i.id for i in instances}
    live = sum(n for owner, n in held.items() if owner in alive)
    orphaned = sum(n for owner, n in held.items() if owner in known and owner not in alive)
    parked = sum(n for owner, n in held.items() if owner not in known)
    jobs = [
        StepCount(step_name(step), kind, count)
        for step, kind, count in sorted(rows.step_counts, key=lambda c: (c[0], c[1] or ""))
    ]
    return StatusReport(
        url=rows.url,
        at=now,
        schema_version=rows.schema_version,
        stale_threshold=stale_threshold,
        instances=instances,
        jobs=jobs,
        total_jobs=sum(c.count for c in jobs),
        in_flight=sum(held.values()),
        in_flight_live=live,
        in_flight_orphaned=orphaned,
        parked=parked,
        oldest_in_flight=_job(rows.oldest_in_flight, now) if rows.oldest_in_flight else None,
        parked_jobs=[_job(r, now) for r in rows.parked],
        handed_over=rows.handed_over,
        failures=[_job(r, now) for r in rows.failures],
    )
