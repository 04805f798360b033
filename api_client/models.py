"""Typed request and response bodies of the Task Execution API, version ``2026-06-30`` (Airflow 3.3.2).

Mirrors ``airflow/api_fastapi/execution_api/datamodels`` for the few routes this project uses, without
importing Airflow. Request models are strict (``extra="forbid"``) like the server's; response models
ignore unknown fields so a compatible server addition does not break us.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "API_VERSION",
    "HealthPing",
    "TIRetryStatePayload",
    "TIStatePayload",
    "TISuccessStatePayload",
    "TITerminalStatePayload",
    "TerminalStateNonSuccess",
    "XComResponse",
    "utcnow",
]

#: The ``Airflow-API-Version`` this client speaks (newest in Airflow 3.3.2).
API_VERSION = "2026-06-30"


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TerminalStateNonSuccess(StrEnum):
    """Terminal states that need no extra information (server: ``TerminalStateNonSuccess``)."""

    FAILED = "failed"
    SKIPPED = "skipped"
    REMOVED = "removed"
    UPSTREAM_FAILED = "upstream_failed"


class TISuccessStatePayload(_Request):
    """``PATCH /task-instances/{id}/state`` → success."""

    state: Literal["success"] = "success"
    end_date: datetime = Field(default_factory=utcnow)
    task_outlets: list[dict[str, JsonValue]] = Field(default_factory=list)
    outlet_events: list[dict[str, JsonValue]] = Field(default_factory=list)
    rendered_map_index: str | None = None


class TITerminalStatePayload(_Request):
    """``PATCH /task-instances/{id}/state`` → failed / skipped / removed / upstream_failed."""

    state: TerminalStateNonSuccess
    end_date: datetime = Field(default_factory=utcnow)
    rendered_map_index: str | None = None


class TIRetryStatePayload(_Request):
    """``PATCH /task-instances/{id}/state`` → up_for_retry."""

    state: Literal["up_for_retry"] = "up_for_retry"
    end_date: datetime = Field(default_factory=utcnow)
    rendered_map_index: str | None = None
    retry_delay_seconds: float | None = None
    retry_reason: str | None = None


#: Any payload ``client.task_instances.update_state`` accepts.
TIStatePayload = TISuccessStatePayload | TITerminalStatePayload | TIRetryStatePayload


class XComResponse(_Response):
    """``GET /xcoms/...`` answer."""

    key: str
    value: JsonValue


class HealthPing(_Response):
    """``GET /health/ping`` answer: which of the server's dependencies answered."""

    ok: list[str]
    failing: dict[str, str]


def dump_payload(payload: BaseModel) -> dict[str, Any]:
    """JSON-ready body; unset optional fields are left out, as the SDK does."""
    return payload.model_dump(mode="json", exclude_none=True)
