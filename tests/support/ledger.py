"""Ledger test helpers: a job spec by number, and an instance made to look dead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from finalizer.jobs import ClusterRef, JobSpec, PodRef, TaskInstanceRef
from finalizer.ledger import Ledger
from finalizer.ledger.schema import instances

__all__ = ["backdate", "make_spec"]


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
