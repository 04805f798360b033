"""What the ledger hands back: frozen records, decoded from rows in one place.

Payloads (the XCom value) and the spec (its ``config_dict`` may hold cluster credentials) are
kept out of ``repr`` so a record can be logged safely.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from finalizer.jobs import JobSpec, Outcome, Step
from finalizer.ledger.dialect import as_utc
from finalizer.ledger.schema import STEP_COLUMNS


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One finalizer process that has registered itself."""

    id: str
    host: str
    pid: int
    started: datetime
    heartbeat: datetime


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One finalization job as the ledger last saw it. ``owner``/``epoch`` are the fence."""

    key: str
    spec: JobSpec = field(repr=False)
    step: Step
    owner: str | None
    epoch: int
    #: True once the XCom was read from the sidecar, even if it was empty (``xcom_value`` None).
    xcom_read: bool
    xcom_value: Any = field(repr=False)
    #: The payload was removed by retention (``purge_payloads``) after it had been pushed.
    xcom_purged: bool
    outcome: Outcome | None
    error: str | None
    #: When the job reached each recorded step (database clock).
    step_times: Mapping[Step, datetime] = field(repr=False)
    created_at: datetime
    updated_at: datetime
    #: When the trigger handed the task to the worker path (then no finalizer acts on the job).
    handed_over_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.step >= Step.DONE


def job_from_row(row: RowMapping, spec: JobSpec | None = None) -> JobRecord:
    """Decode one ``kpof_jobs`` row; pass ``spec`` when the caller already holds it (no re-parse)."""
    times: dict[Step, datetime] = {}
    for step, column in STEP_COLUMNS.items():
        value = as_utc(row[column])
        if value is not None:
            times[step] = value
    outcome = row["outcome"]
    xcom_text = row["xcom_value"]
    created, updated = as_utc(row["created_at"]), as_utc(row["updated_at"])
    assert created is not None  # NOT NULL column
    assert updated is not None  # NOT NULL column
    return JobRecord(
        key=row["key"],
        spec=spec if spec is not None else JobSpec.model_validate_json(row["spec"]),
        step=Step(row["step"]),
        owner=row["owner"],
        epoch=int(row["epoch"]),
        xcom_read=bool(row["xcom_read"]),
        xcom_value=json.loads(xcom_text) if xcom_text is not None else None,
        xcom_purged=bool(row["xcom_purged"]),
        outcome=Outcome.model_validate_json(outcome) if outcome is not None else None,
        error=row["error"],
        step_times=times,
        created_at=created,
        updated_at=updated,
        handed_over_at=as_utc(row["handed_over_at"]),
    )


def instance_from_row(row: RowMapping) -> InstanceRecord:
    started, heartbeat = as_utc(row["started"]), as_utc(row["heartbeat"])
    assert started is not None  # NOT NULL column
    assert heartbeat is not None  # NOT NULL column
    return InstanceRecord(row["id"], row["host"], int(row["pid"]), started, heartbeat)
