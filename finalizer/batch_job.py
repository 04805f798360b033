"""A read-only, typed view over a batch/v1 Job as the API sends it (raw JSON dict).

Like ``finalizer.pod.PodView``: the raw dict is kept and only what the finalizer needs is read;
every accessor tolerates missing fields. ``terminal`` reads the conditions as the provider's
``KubernetesHook.is_job_complete`` / ``is_job_failed`` read them (10.25.0): a ``Complete`` or
``Failed`` condition whose status is ``"True"``. SuccessCriteriaMet / FailureTarget (1.31+) are
only early signals; they do not end a Job here, as they do not upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from finalizer.pod import JSON, parse_time

JobTerminal = Literal["complete", "failed"]


@dataclass(frozen=True, slots=True)
class JobCondition:
    """One entry of ``status.conditions``."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None

    @property
    def true(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True, slots=True)
class BatchJobView:
    raw: JSON

    @property
    def _meta(self) -> JSON:
        return self.raw.get("metadata") or {}

    @property
    def _spec(self) -> JSON:
        return self.raw.get("spec") or {}

    @property
    def _status(self) -> JSON:
        return self.raw.get("status") or {}

    @property
    def name(self) -> str:
        return str(self._meta.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self._meta.get("namespace", ""))

    @property
    def uid(self) -> str:
        return str(self._meta.get("uid", ""))

    @property
    def resource_version(self) -> str:
        return str(self._meta.get("resourceVersion", ""))

    @property
    def deleting(self) -> bool:
        """``metadata.deletionTimestamp`` is set (a Foreground delete waits for the pods)."""
        return self._meta.get("deletionTimestamp") is not None

    @property
    def parallelism(self) -> int | None:
        value = self._spec.get("parallelism")
        return int(value) if value is not None else None

    @property
    def completions(self) -> int | None:
        value = self._spec.get("completions")
        return int(value) if value is not None else None

    @property
    def indexed(self) -> bool:
        return self._spec.get("completionMode") == "Indexed"

    @property
    def backoff_limit(self) -> int | None:
        value = self._spec.get("backoffLimit")
        return int(value) if value is not None else None

    def _count(self, field: str) -> int:
        return int(self._status.get(field) or 0)

    @property
    def active(self) -> int:
        return self._count("active")

    @property
    def succeeded(self) -> int:
        return self._count("succeeded")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def start_time(self) -> datetime | None:
        return parse_time(self._status.get("startTime"))

    @property
    def completion_time(self) -> datetime | None:
        return parse_time(self._status.get("completionTime"))

    @property
    def conditions(self) -> tuple[JobCondition, ...]:
        out = []
        for item in self._status.get("conditions") or ():
            if isinstance(item, dict):
                out.append(
                    JobCondition(
                        type=str(item.get("type", "")),
                        status=str(item.get("status", "")),
                        reason=item.get("reason"),
                        message=item.get("message"),
                    )
                )
        return tuple(out)

    def condition(self, kind: str) -> JobCondition | None:
        """The ``kind`` condition when its status is ``"True"``."""
        return next((c for c in self.conditions if c.type == kind and c.true), None)

    @property
    def terminal(self) -> JobTerminal | None:
        """``"complete"`` / ``"failed"`` as upstream's ``is_job_complete`` / ``is_job_failed``."""
        if self.condition("Complete") is not None:
            return "complete"
        if self.condition("Failed") is not None:
            return "failed"
        return None

    @property
    def failure(self) -> str | None:
        """Upstream's ``is_job_failed`` answer: the Failed condition's reason (or message)."""
        cond = self.condition("Failed")
        if cond is None:
            return None
        return cond.reason or cond.message or "Failed"
