"""A read-only, typed view over a pod as the API sends it (raw JSON dict).

Watches deliver thousands of pod objects; turning each into a ``V1Pod`` costs milliseconds
(timestamp parsing), so the finalizer keeps the raw dict and reads only what it needs.
Every accessor tolerates missing fields: a half-filled pod is a normal sight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

JSON = dict[str, Any]
ContainerStateName = Literal["waiting", "running", "terminated", "unknown"]

XCOM_SIDECAR_NAME = "airflow-xcom-sidecar"


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 Kubernetes timestamp (``2026-11-22T04:22:38Z``)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One entry of ``status.containerStatuses``."""

    raw: JSON

    @property
    def name(self) -> str:
        return str(self.raw.get("name", ""))

    @property
    def state(self) -> ContainerStateName:
        state = self.raw.get("state") or {}
        for name in ("terminated", "running", "waiting"):
            if state.get(name) is not None:
                return name
        return "unknown"

    def _state_field(self, field: str) -> Any:
        state = self.raw.get("state") or {}
        return (state.get(self.state) or {}).get(field)

    @property
    def reason(self) -> str | None:
        value = self._state_field("reason")
        return str(value) if value is not None else None

    @property
    def message(self) -> str | None:
        value = self._state_field("message")
        return str(value) if value is not None else None

    @property
    def exit_code(self) -> int | None:
        code = self._state_field("exitCode") if self.state == "terminated" else None
        return int(code) if code is not None else None

    @property
    def finished_at(self) -> datetime | None:
        return parse_time(self._state_field("finishedAt")) if self.state == "terminated" else None

    @property
    def started_at(self) -> datetime | None:
        return parse_time(self._state_field("startedAt"))


@dataclass(frozen=True, slots=True)
class PodView:
    """A pod: ``raw`` is the API's JSON object (camelCase keys)."""

    raw: JSON

    @property
    def metadata(self) -> JSON:
        return self.raw.get("metadata") or {}

    @property
    def status(self) -> JSON:
        return self.raw.get("status") or {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))

    @property
    def resource_version(self) -> str:
        return str(self.metadata.get("resourceVersion", ""))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.metadata.get("labels") or {})

    @property
    def deletion_timestamp(self) -> datetime | None:
        return parse_time(self.metadata.get("deletionTimestamp"))

    @property
    def creation_timestamp(self) -> datetime | None:
        return parse_time(self.metadata.get("creationTimestamp"))

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "Pending")

    def containers(self) -> list[ContainerView]:
        return [ContainerView(c) for c in self.status.get("containerStatuses") or []]

    def container(self, name: str) -> ContainerView | None:
        for status in self.status.get("containerStatuses") or []:
            if status.get("name") == name:
                return ContainerView(status)
        return None

    def condition(self, type_: str) -> JSON | None:
        for cond in self.status.get("conditions") or []:
            if cond.get("type") == type_:
                return dict(cond)
        return None

    @property
    def is_scheduled(self) -> bool:
        cond = self.condition("PodScheduled")
        return bool(cond and cond.get("status") == "True")

    @property
    def scheduled_at(self) -> datetime | None:
        cond = self.condition("PodScheduled")
        if cond and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime"))
        return None

    @property
    def is_being_evicted(self) -> bool:
        """Scale-down eviction: ``DisruptionTarget`` set and/or ``deletionTimestamp`` present."""
        cond = self.condition("DisruptionTarget")
        return self.deletion_timestamp is not None or bool(cond and cond.get("status") == "True")

    def has_running_sidecar(self) -> bool:
        sidecar = self.container(XCOM_SIDECAR_NAME)
        return sidecar is not None and sidecar.state == "running"
