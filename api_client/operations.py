"""Operation groups of the HTTP client, named like the Task SDK's: ``xcoms``, ``task_instances``.

Paths are built here (every segment percent-encoded; the server decodes them, so keys may contain
``/``); requests go through ``api_client._http.HTTPCore``.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from api_client._http import HTTPCore, parse
from api_client.exceptions import NotFoundError, XComNotFoundError
from api_client.models import (
    TerminalStateNonSuccess,
    TIRetryStatePayload,
    TIStatePayload,
    TISuccessStatePayload,
    TITerminalStatePayload,
    XComResponse,
    dump_payload,
)
from api_client.store import XComRef

__all__ = ["TaskInstanceOperations", "XComOperations"]


def _xcom_path(ref: XComRef) -> str:
    parts = (ref.dag_id, ref.run_id, ref.task_id, ref.key)
    return "/xcoms/" + "/".join(quote(p, safe="") for p in parts)


class XComOperations:
    """``/xcoms``: implements ``api_client.XComStore`` over HTTP."""

    def __init__(self, core: HTTPCore) -> None:
        self._core = core

    async def set(
        self, ref: XComRef, value: Any, *, mapped_length: int | None = None, dag_result: bool = False
    ) -> None:
        """Store ``value`` as the raw JSON body (no Airflow serialisation envelope). 404: unknown run."""
        params: dict[str, Any] = {"map_index": ref.map_index, "mapped_length": mapped_length}
        if dag_result:
            params["dag_result"] = True
        await self._core.request("POST", _xcom_path(ref), params=params, body=value, send_body=True)

    async def get(self, ref: XComRef) -> Any:
        """The stored value; ``XComNotFoundError`` when there is none (a stored ``null`` is ``None``)."""
        try:
            response = await self._core.request("GET", _xcom_path(ref), params={"map_index": ref.map_index})
        except NotFoundError as exc:
            raise XComNotFoundError(
                f"XCom {ref} not found",
                method=exc.method,
                path=exc.path,
                reason=exc.reason,
                detail=exc.detail,
            ) from exc
        return parse(XComResponse, response).value

    async def delete(self, ref: XComRef) -> None:
        """Remove the XCom; a missing one is fine (the server answers 200)."""
        await self._core.request("DELETE", _xcom_path(ref), params={"map_index": ref.map_index})


class TaskInstanceOperations:
    """``/task-instances/{id}/state``: end a task instance.

    From any state but RUNNING the server answers 409 ``invalid_state`` → ``InvalidStateError`` with
    ``previous_state``; asking for the state the TI is already in succeeds (the server answers 200).
    """

    def __init__(self, core: HTTPCore) -> None:
        self._core = core

    async def update_state(self, ti_id: uuid.UUID | str, payload: TIStatePayload) -> None:
        path = f"/task-instances/{quote(str(ti_id), safe='')}/state"
        await self._core.request("PATCH", path, body=dump_payload(payload), send_body=True)

    async def succeed(self, ti_id: uuid.UUID | str, *, rendered_map_index: str | None = None) -> None:
        await self.update_state(ti_id, TISuccessStatePayload(rendered_map_index=rendered_map_index))

    async def fail(self, ti_id: uuid.UUID | str, *, rendered_map_index: str | None = None) -> None:
        """FAILED, no retry (the server does not apply retries here; see ``up_for_retry``)."""
        payload = TITerminalStatePayload(
            state=TerminalStateNonSuccess.FAILED, rendered_map_index=rendered_map_index
        )
        await self.update_state(ti_id, payload)

    async def skip(self, ti_id: uuid.UUID | str, *, rendered_map_index: str | None = None) -> None:
        payload = TITerminalStatePayload(
            state=TerminalStateNonSuccess.SKIPPED, rendered_map_index=rendered_map_index
        )
        await self.update_state(ti_id, payload)

    async def up_for_retry(
        self,
        ti_id: uuid.UUID | str,
        *,
        retry_reason: str | None = None,
        retry_delay_seconds: float | None = None,
    ) -> None:
        payload = TIRetryStatePayload(retry_reason=retry_reason, retry_delay_seconds=retry_delay_seconds)
        await self.update_state(ti_id, payload)
