"""Ledger test helpers: a job spec by number, an instance made to look dead, a job's record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from finalizer.jobs import ClusterRef, JobSpec, PodRef, TaskInstanceRef
from finalizer.ledger import Ledger
from finalizer.ledger.records import JobRecord
from finalizer.ledger.schema import instances

__all__ = ["backdate", "make_spec", "record_of"]


def make_spec(n: int = 0, *, uid: str | None = None, try_number: int = 1) -> JobSpec:
    return JobSpec(
        ti=TaskInstanceRef(
            id=f"0199-ti-{n}", dag_id="dag", task_id=f"task_{n}", run_id="run1", try_number=try_number
        ),
        cluster=ClusterRef(kubernetes_conn_id="k8s"),
        pod=PodRef(namespace="ns", name=f"pod-{n}", uid=uid or f"uid-{n}"),
    )


async def backdate(ledger: Ledger, instance_id: str, seconds: float = 3600) -> None:
    """Make an instance look dead: move its heartbeat into the past, in SQL."""
    statement = (
        instances.update()
        .where(instances.c.id == instance_id)
        .values(heartbeat=datetime.now(UTC) - timedelta(seconds=seconds))
    )
    await ledger.run_sql(lambda conn: conn.execute(statement))


async def record_of(ledger_url: str, key: str) -> JobRecord:
    """The ledger's record of job ``key``, read through a connection of its own (as another
    triggerer would read it)."""
    ledger = await Ledger.connect(ledger_url)
    try:
        rec = await ledger.get(key)
    finally:
        await ledger.aclose()
    assert rec is not None, f"no ledger record for {key}"
    return rec
