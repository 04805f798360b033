"""``XComStore``: the XCom sink the finalizer pipeline writes to, whatever carries it.

Two implementations: ``client.xcoms`` (HTTP, with a token) and ``api_client.supervisor.
SupervisorXComStore`` (inside ``airflow triggerer``, over the runner→supervisor socket). Contract,
shared by both:

- ``set(ref, value, *, mapped_length=None)`` stores ``value`` (any JSON value) as clean JSON,
  overwriting; ``mapped_length`` also records the TaskMap row (``max_map_length`` bounds it).
  Idempotent: setting the same value twice is the same as once.
- ``get(ref)`` returns the stored value or raises ``XComNotFoundError``.
- ``delete(ref)`` removes it; deleting a missing XCom is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["XComRef", "XComStore"]


@dataclass(frozen=True, slots=True)
class XComRef:
    """Where one XCom lives: the TI's coordinates plus the key."""

    dag_id: str
    run_id: str
    task_id: str
    key: str
    map_index: int = -1

    def __str__(self) -> str:
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.key}[{self.map_index}]"


@runtime_checkable
class XComStore(Protocol):
    """See the module docstring for the contract."""

    async def set(self, ref: XComRef, value: Any, *, mapped_length: int | None = None) -> None: ...

    async def get(self, ref: XComRef) -> Any: ...

    async def delete(self, ref: XComRef) -> None: ...
