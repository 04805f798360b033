"""A job's progress through the pipeline: which steps are written to the ledger, and when.

Every ``Step`` gets its time, but not every step gets its own write. The ledger is written at
the durability points only — the payload (``XCOM_PERSISTED``: before anything is pushed or
deleted) and the end (``DONE``) — and each write carries the times of the idempotent steps
passed since the previous one (push, log tail, sidecar stop, cleanup). A job that crashes
between two writes resumes at the last one and redoes those steps, which the pipeline already
requires to be safe (an XCom set is an overwrite, a delete of a gone pod counts as done). A
finalization makes three ledger writes (submit, payload, done); see ``finalizer/ledger/DECISIONS.md``.

The step hook still sees every step as it is reached, with ``durable`` telling whether the
ledger holds it (crash tests stop a job at each boundary, durable or not).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api_client.backoff import RetryPolicy
from finalizer.jobs import JobSpec, Step
from finalizer.ledger.records import JobRecord
from finalizer.metrics import FinalizerMetrics
from finalizer.retry import ledger_call
from finalizer.seams import JobLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepReached:
    """What the step hook gets: the step just reached, whether it is written, the last record."""

    step: Step
    durable: bool
    rec: JobRecord


#: Awaited with each step reached (the service tracks jobs; tests crash jobs there).
StepHook = Callable[[JobSpec, StepReached], Awaitable[None]]


@dataclass(slots=True)
class Progress:
    """One run of one job: the last record written, and the steps reached since."""

    spec: JobSpec
    rec: JobRecord
    ledger: JobLedger
    policy: RetryPolicy
    metrics: FinalizerMetrics
    hook: StepHook | None = None
    pending: dict[Step, datetime] = field(default_factory=dict)

    @property
    def step(self) -> Step:
        """The last step the ledger holds (where a resumed run would start)."""
        return self.rec.step

    async def reach(self, step: Step, at: datetime | None = None) -> None:
        """``step`` is done; its time goes to the ledger with the next write."""
        self.pending.setdefault(step, at or datetime.now(UTC))
        await self._notify(step, durable=False)

    async def commit(self, step: Step, **fields: Any) -> JobRecord:
        """Write ``step`` (and the pending steps' times); a briefly unreachable ledger is retried,
        a lost job (``JobLostError``) is not."""
        reached = dict(self.pending)

        async def write() -> JobRecord:
            return await self.ledger.advance(self.rec, step, reached=reached, **fields)

        with self.metrics.timed("ledger"):
            self.rec = await ledger_call(f"job {self.spec.key}: writing {step.name}", write, self.policy)
        self.pending.clear()
        log.debug("job %s: %s", self.spec.key, step.name)
        await self._notify(step, durable=True)
        return self.rec

    async def _notify(self, step: Step, *, durable: bool) -> None:
        if self.hook is not None:
            await self.hook(self.spec, StepReached(step, durable, self.rec))
