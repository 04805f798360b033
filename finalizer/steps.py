"""Pure pieces of the finalization pipeline: XCom push plans and the outcome marker.

Kept apart from ``pipeline.py`` (which does the I/O) so each rule has a table-driven test:
what gets pushed under which key (mirroring the task runner's ``_push_xcom_if_needed``), and
how a trigger re-run elsewhere recognises the outcome marker of *its own* job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from finalizer.jobs import FinishSettings, JobSpec, Outcome

#: The XCom key Airflow uses for a task's return value.
RETURN_KEY = "return_value"
#: The XCom key of the finalization-outcome marker (written before the pod is deleted).
MARKER_KEY = "__kpo_finalizer_outcome"
#: Airflow refuses ``mapped_length`` above this (``[core] max_map_length`` default).
MAX_MAP_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Push:
    """One XCom to write: key, value, and the TaskMap length when a mapped task depends on it."""

    key: str
    value: Any
    mapped_length: int | None = None


class PushRefused(ValueError):
    """The value cannot be pushed as configured (e.g. ``multiple_outputs`` needs a dict)."""


def _is_mappable(value: Any) -> bool:
    """Airflow's ``is_mappable_value``: a sequence that is not a string, or a mapping."""
    if isinstance(value, Mapping):
        return True
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def plan_pushes(value: Any, settings: FinishSettings, *, succeeded: bool = True) -> list[Push]:
    """What the task runner's ``_push_xcom_if_needed`` would push for this return value.

    ``None`` pushes nothing (unless a mapped task needs a length: then it is refused, as
    Airflow's ``XComForMappingNotPushed``); ``multiple_outputs`` pushes each key, then the whole
    value under ``return_value``. For a task that did not succeed (``succeeded=False``: the
    provider's ``_push_xcom_with_fan_out`` on the failure path) there is no TaskMap length.
    """
    if not succeeded:
        settings = settings.model_copy(update={"mapped_length": False})
    if value is None:
        if settings.mapped_length:
            raise PushRefused("the task returned no XCom, but a downstream mapped task needs one to map over")
        return []
    mapped_length: int | None = None
    if settings.mapped_length:
        if not _is_mappable(value):
            raise PushRefused(
                f"XCom of type {type(value).__name__} cannot be mapped over: a list or dict is required"
            )
        mapped_length = len(value)
        if mapped_length > MAX_MAP_LENGTH:
            raise PushRefused(f"XCom has {mapped_length} items to map over; at most {MAX_MAP_LENGTH} allowed")
    pushes: list[Push] = []
    if settings.multiple_outputs:
        if not isinstance(value, dict):
            raise PushRefused(
                f"multiple_outputs requires the XCom to be a JSON object, got {type(value).__name__}"
            )
        bad = [k for k in value if not k]
        if bad:
            raise PushRefused("multiple_outputs: an empty string is not a valid XCom key")
        pushes.extend(Push(str(k), v) for k, v in value.items())
    pushes.append(Push(RETURN_KEY, value, mapped_length))
    return pushes


# -- the outcome marker -----------------------------------------------------------------------


def encode_marker(spec: JobSpec, outcome: Outcome) -> dict[str, Any]:
    """The marker XCom value: the job key and the outcome, nothing else (no payload)."""
    return {"job": spec.key, "outcome": outcome.model_dump(mode="json")}


def decode_marker(value: Any, spec: JobSpec) -> Outcome | None:
    """The outcome recorded by a marker, if it belongs to this very job (ti try + pod uid)."""
    if not isinstance(value, dict) or value.get("job") != spec.key:
        return None
    try:
        return Outcome.model_validate(value.get("outcome"))
    except ValidationError:
        return None


def with_note(outcome: Outcome, note: str) -> Outcome:
    """The same outcome with ``note`` appended to its reason."""
    reason = f"{outcome.reason}; {note}" if outcome.reason else note
    return outcome.model_copy(update={"reason": reason})
