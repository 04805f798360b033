"""``SupervisorXComStore``: the XCom sink inside ``airflow triggerer``, where there is no token.

Inside the triggerer, trigger code reaches the Execution API only through the trigger runner's socket to
its supervisor (``SetXCom``/``GetXCom``/``DeleteXCom``), which Airflow's own ``XCom`` class speaks. That
socket belongs to the runner's event loop. The finalizer runs on a different loop in another thread,
so this store marshals every call onto the runner's loop and the result (or error) back.

Contract:

- Create it **on the trigger runner's loop** (e.g. in ``FinalizingPodTrigger.run``); it captures that
  loop (or pass ``loop=`` explicitly). Airflow is imported lazily, at the first call, on that loop.
- Await its methods from **any** loop in any thread. Called from the captured loop it simply awaits;
  from another loop it submits the work with ``asyncio.run_coroutine_threadsafe`` and awaits
  ``asyncio.wrap_future``: the calling loop is never blocked. Cancelling the caller cancels the work on
  the runner's loop. If that loop is closed or stopped, calls fail at once with ``SupervisorUnavailableError``
  (a stopped loop would otherwise never answer; calls from its own thread cannot wait for it).
- ``set`` goes through ``XCom.aset`` (clean JSON, the configured ``[core] xcom_backend``, TaskMap via
  ``_mapped_length``). ``get`` through ``XCom.aget_one``. ``delete`` through the sync ``XCom.delete``
  (task-sdk 1.3.2 has no async delete) run in a worker thread started from the runner's loop, so the
  backend's ``purge`` still runs and the loop is not blocked.
- Errors come back as ``api_client.exceptions``: the supervisor's ``ErrorResponse`` carries the Execution
  API's status, which maps like an HTTP answer (404 → ``NotFoundError``; no status → ``TransportError``).
- **Bounded in flight** (``max_in_flight``, default 4). The supervisor serves the runner's requests
  one at a time, in the order they arrive, and the same queue carries every other trigger's
  events and the runner's state. A handful in flight keeps the supervisor busy; more only makes
  everything queued behind them wait (a burst of 32 concurrent jobs made other triggers' events
  late by seconds). Calls beyond the bound wait on the runner's loop, not in the socket.
- No timeout of its own: the caller bounds each call (the pipeline wraps every I/O call in its
  ``call_timeout``), and cancelling the caller cancels the work on the runner's loop, so a stuck
  supervisor holds nothing. No retries either: the supervisor socket is local, a failure is not a
  network blip, and the caller's retry policy decides with ``api_client.classify``.
- Limitation (Airflow's, not ours): ``XCom.aget_one`` answers ``None`` both for a missing XCom and a
  stored JSON ``null``; ``get`` reports both as ``XComNotFoundError``.

The Airflow calls sit behind the ``SupervisorOps`` seam so the marshalling is unit-tested with stand-ins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from api_client.exceptions import (
    ExecutionAPIError,
    TransportError,
    XComNotFoundError,
    error_for_status,
)
from api_client.store import XComRef

__all__ = ["SupervisorOps", "SupervisorUnavailableError", "SupervisorXComStore", "airflow_ops"]

T = TypeVar("T")


class SupervisorUnavailableError(ExecutionAPIError):
    """The trigger runner's event loop is closed or not running: nothing can reach the supervisor."""


@dataclass(frozen=True, slots=True)
class SupervisorOps:
    """The three calls the store makes, each awaited on the runner's loop."""

    set: Callable[[XComRef, Any, int | None], Awaitable[None]]
    get: Callable[[XComRef], Awaitable[Any]]
    delete: Callable[[XComRef], Awaitable[None]]


def airflow_ops() -> SupervisorOps:
    """The real calls, through ``airflow.sdk.execution_time.xcom.XCom`` (imported here, lazily)."""
    from airflow.sdk.execution_time.xcom import XCom

    async def set_(ref: XComRef, value: Any, mapped_length: int | None) -> None:
        await XCom.aset(
            ref.key,
            value,
            dag_id=ref.dag_id,
            task_id=ref.task_id,
            run_id=ref.run_id,
            map_index=ref.map_index,
            _mapped_length=mapped_length,
        )

    async def get(ref: XComRef) -> Any:
        return await XCom.aget_one(
            key=ref.key, dag_id=ref.dag_id, task_id=ref.task_id, run_id=ref.run_id, map_index=ref.map_index
        )

    async def delete(ref: XComRef) -> None:
        await asyncio.to_thread(
            XCom.delete,
            key=ref.key,
            task_id=ref.task_id,
            dag_id=ref.dag_id,
            run_id=ref.run_id,
            map_index=ref.map_index,
        )

    return SupervisorOps(set=set_, get=get, delete=delete)


def translate_supervisor_error(exc: Exception, *, op: str, ref: XComRef) -> ExecutionAPIError:
    """Map Airflow's ``AirflowRuntimeError(ErrorResponse)`` (duck-typed) into our tree."""
    if isinstance(exc, ExecutionAPIError):
        return exc
    error = getattr(exc, "error", None)
    kind = getattr(getattr(error, "error", None), "value", None)
    detail = getattr(error, "detail", None)
    path = f"supervisor:{op} {ref}"
    if kind == "XCOM_NOT_FOUND":
        return XComNotFoundError(f"XCom {ref} not found", method=op, path=path, detail=detail)
    if isinstance(detail, dict) and isinstance(detail.get("status_code"), int):
        return error_for_status(detail["status_code"], detail.get("detail"), method=op, path=path)
    if error is not None:
        # An ErrorResponse without an HTTP status: the supervisor could not reach the API.
        return TransportError(f"{path}: {kind}: {detail}")
    return ExecutionAPIError(f"{path}: {type(exc).__name__}: {exc}")


class SupervisorXComStore:
    """``XComStore`` over the trigger runner → supervisor channel. See the module docstring."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        ops: SupervisorOps | Callable[[], SupervisorOps] = airflow_ops,
        max_in_flight: int = 4,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._ops_source = ops
        self._ops: SupervisorOps | None = ops if isinstance(ops, SupervisorOps) else None
        self.max_in_flight = max_in_flight
        self._gate: asyncio.Semaphore | None = None  # made on the runner's loop, at the first call
        #: Calls now with the supervisor (at most ``max_in_flight``).
        self.in_flight = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _resolve_ops(self) -> SupervisorOps:
        # Runs on the runner's loop: the lazy Airflow import happens there, once.
        if self._ops is None:
            source = self._ops_source
            self._ops = source if isinstance(source, SupervisorOps) else source()
        return self._ops

    async def _on_runner_loop(
        self, op: str, ref: XComRef, call: Callable[[SupervisorOps], Awaitable[T]]
    ) -> T:
        async def run() -> T:
            if self._gate is None:
                self._gate = asyncio.Semaphore(self.max_in_flight)
            async with self._gate:
                self.in_flight += 1
                try:
                    return await call(self._resolve_ops())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    raise translate_supervisor_error(exc, op=op, ref=ref) from exc
                finally:
                    self.in_flight -= 1

        if asyncio.get_running_loop() is self._loop:
            return await run()
        if self._loop.is_closed() or not self._loop.is_running():
            raise SupervisorUnavailableError(f"{op} {ref}: the trigger runner's event loop is not running")
        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return await asyncio.wrap_future(future)

    async def set(self, ref: XComRef, value: Any, *, mapped_length: int | None = None) -> None:
        await self._on_runner_loop("set", ref, lambda ops: ops.set(ref, value, mapped_length))

    async def get(self, ref: XComRef) -> Any:
        value = await self._on_runner_loop("get", ref, lambda ops: ops.get(ref))
        if value is None:
            raise XComNotFoundError(f"XCom {ref} not found (or stored as null)", method="get", path=str(ref))
        return value

    async def delete(self, ref: XComRef) -> None:
        await self._on_runner_loop("delete", ref, lambda ops: ops.delete(ref))

    def __repr__(self) -> str:
        return f"SupervisorXComStore(loop={self._loop!r})"
