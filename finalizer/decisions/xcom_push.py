"""Pure rule: which XComs a task's return value becomes (the task runner's ``_push_xcom_if_needed``).

Kept apart from the pipeline (which does the I/O) so each rule has a table-driven test: what
gets pushed under which key, with which TaskMap length, and what is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from finalizer.jobs import FinishSettings

#: The XCom key Airflow uses for a task's return value.
RETURN_KEY = "return_value"
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
