"""``SupervisorXComStore`` marshalling, with stand-in Airflow calls injected through ``SupervisorOps``.

The "runner loop" here is a real asyncio loop in its own thread, like the trigger runner's; the
calling side is the test's loop (a different thread), like the finalizer's portal loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api_client import (
    BadRequestError,
    ExecutionAPIError,
    NotFoundError,
    SupervisorUnavailableError,
    SupervisorXComStore,
    TransportError,
    XComNotFoundError,
    XComRef,
    XComStore,
)
from api_client.supervisor import SupervisorOps, translate_supervisor_error

pytestmark = pytest.mark.anyio

REF = XComRef("dag", "run", "task", "return_value")


@pytest.fixture
def runner_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-trigger-runner", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


class StandIn:
    """Records which loop and thread each call ran on; stores values in a dict."""

    def __init__(self) -> None:
        self.data: dict[XComRef, Any] = {}
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[str] = []
        self.gate: asyncio.Event | None = None
        self.cancelled = threading.Event()
        self.entered = threading.Event()
        self.error: Exception | None = None

    def _record(self) -> None:
        self.loops.append(asyncio.get_running_loop())
        self.threads.append(threading.current_thread().name)

    async def set(self, ref: XComRef, value: Any, mapped_length: int | None) -> None:
        self._record()
        if self.error:
            raise self.error
        self.entered.set()
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        self.data[ref] = (value, mapped_length)

    async def get(self, ref: XComRef) -> Any:
        self._record()
        return self.data.get(ref, (None, None))[0]

    async def delete(self, ref: XComRef) -> None:
        self._record()
        self.data.pop(ref, None)

    def ops(self) -> SupervisorOps:
        return SupervisorOps(set=self.set, get=self.get, delete=self.delete)


def on_loop(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=5)


async def make_store(stand_in: StandIn) -> SupervisorXComStore:
    return SupervisorXComStore(ops=stand_in.ops)  # captures the loop it is created on


async def test_calls_from_another_loop_run_on_the_runner_loop(runner_loop: asyncio.AbstractEventLoop) -> None:
    stand_in = StandIn()
    store = on_loop(runner_loop, make_store(stand_in))
    assert isinstance(store, XComStore)
    assert store.loop is runner_loop
    await store.set(REF, {"a": 1}, mapped_length=2)
    assert await store.get(REF) == {"a": 1}
    await store.delete(REF)
    with pytest.raises(XComNotFoundError):
        await store.get(REF)
    assert stand_in.loops == [runner_loop] * 4
    assert set(stand_in.threads) == {"fake-trigger-runner"}
    assert stand_in.data == {}


async def test_calls_on_the_runner_loop_just_await() -> None:
    stand_in = StandIn()
    store = SupervisorXComStore(ops=stand_in.ops())
    await store.set(REF, [1, None])
    assert await store.get(REF) == [1, None]
    assert stand_in.loops == [asyncio.get_running_loop()] * 2
    assert stand_in.threads == [threading.current_thread().name] * 2


async def test_the_calling_loop_is_not_blocked(runner_loop: asyncio.AbstractEventLoop) -> None:
    stand_in = StandIn()
    store = on_loop(runner_loop, make_store(stand_in))
    stand_in.gate = on_loop(runner_loop, _make_event())
    set_task = asyncio.create_task(store.set(REF, "v"))
    assert await asyncio.to_thread(stand_in.entered.wait, 5)

    async def ticker() -> int:
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.005)
            ticks += 1
        return ticks

    # Our loop keeps running other work while the runner holds the call.
    assert await asyncio.wait_for(ticker(), 5) == 5
    assert not set_task.done()
    runner_loop.call_soon_threadsafe(stand_in.gate.set)
    await asyncio.wait_for(set_task, 5)
    assert stand_in.data[REF] == ("v", None)


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


async def test_cancelling_the_caller_cancels_the_work_on_the_runner(
    runner_loop: asyncio.AbstractEventLoop,
) -> None:
    stand_in = StandIn()
    store = on_loop(runner_loop, make_store(stand_in))
    stand_in.gate = on_loop(runner_loop, _make_event())
    task = asyncio.create_task(store.set(REF, "never"))
    assert await asyncio.to_thread(stand_in.entered.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(stand_in.cancelled.wait, 5)
    assert REF not in stand_in.data


@dataclass
class FakeErrorType:
    value: str


@dataclass
class FakeErrorResponse:
    error: FakeErrorType
    detail: Any


class FakeAirflowRuntimeError(Exception):
    """Shape of ``airflow.sdk.exceptions.AirflowRuntimeError``: ``.error`` is an ``ErrorResponse``."""

    def __init__(self, kind: str, detail: Any) -> None:
        self.error = FakeErrorResponse(FakeErrorType(kind), detail)
        super().__init__(f"{kind}: {detail}")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (FakeAirflowRuntimeError("XCOM_NOT_FOUND", {"key": "k"}), XComNotFoundError),
        (
            FakeAirflowRuntimeError(
                "API_SERVER_ERROR", {"status_code": 404, "message": "m", "detail": {"detail": "no run"}}
            ),
            NotFoundError,
        ),
        (
            FakeAirflowRuntimeError(
                "API_SERVER_ERROR",
                {"status_code": 400, "detail": {"reason": "unmappable_return_value_length"}},
            ),
            BadRequestError,
        ),
        (
            FakeAirflowRuntimeError("API_SERVER_ERROR", {"status_code": None, "message": "conn"}),
            TransportError,
        ),
        (RuntimeError("anything else"), ExecutionAPIError),
    ],
)
async def test_errors_cross_back_translated(
    runner_loop: asyncio.AbstractEventLoop, raised: Exception, expected: type[ExecutionAPIError]
) -> None:
    stand_in = StandIn()
    stand_in.error = raised
    store = on_loop(runner_loop, make_store(stand_in))
    with pytest.raises(expected) as err:
        await store.set(REF, 1)
    assert err.value.__cause__ is raised


def test_translate_keeps_our_own_errors() -> None:
    ours = NotFoundError("x", status_code=404)
    assert translate_supervisor_error(ours, op="set", ref=REF) is ours


async def test_a_dead_runner_loop_fails_fast() -> None:
    loop = asyncio.new_event_loop()
    store = SupervisorXComStore(loop=loop, ops=StandIn().ops())
    with pytest.raises(SupervisorUnavailableError):
        await store.set(REF, 1)
    loop.close()
    with pytest.raises(SupervisorUnavailableError):
        await store.get(REF)


async def test_ops_factory_is_resolved_once_on_the_runner_loop(
    runner_loop: asyncio.AbstractEventLoop,
) -> None:
    stand_in = StandIn()
    made_on: list[asyncio.AbstractEventLoop] = []

    def factory() -> SupervisorOps:
        made_on.append(asyncio.get_running_loop())
        return stand_in.ops()

    store = on_loop(runner_loop, _store_with_factory(factory))
    await store.set(REF, 1)
    await store.set(REF, 2)
    assert made_on == [runner_loop]


async def _store_with_factory(factory: Any) -> SupervisorXComStore:
    return SupervisorXComStore(ops=factory)


def test_creating_outside_a_loop_needs_an_explicit_loop() -> None:
    with pytest.raises(RuntimeError):
        SupervisorXComStore(ops=StandIn().ops())


def test_the_real_airflow_calls_exist_with_the_parameters_we_use() -> None:
    """Guards ``airflow_ops`` against task-sdk drift (the end-to-end proof is the triggerer test)."""
    import inspect

    from airflow.sdk.execution_time.xcom import XCom

    from api_client.supervisor import airflow_ops

    ops = airflow_ops()
    assert inspect.iscoroutinefunction(XCom.aset)
    assert inspect.iscoroutinefunction(XCom.aget_one)
    assert {"dag_id", "task_id", "run_id", "map_index", "_mapped_length"} <= set(
        inspect.signature(XCom.aset).parameters
    )
    assert {"key", "dag_id", "task_id", "run_id", "map_index"} <= set(
        inspect.signature(XCom.aget_one).parameters
    )
    assert {"key", "dag_id", "task_id", "run_id", "map_index"} <= set(
        inspect.signature(XCom.delete).parameters
    )
    assert callable(ops.set)
    assert callable(ops.get)
    assert callable(ops.delete)


async def test_calls_beyond_max_in_flight_wait_on_the_runner_loop_not_at_the_supervisor() -> None:
    """The supervisor serves one request at a time, behind which every other trigger waits."""
    stand_in = StandIn()
    stand_in.gate = asyncio.Event()  # the supervisor holds every set until released
    store = SupervisorXComStore(ops=stand_in.ops(), max_in_flight=2)
    refs = [XComRef("dag", "run", f"task{i}", "return_value") for i in range(5)]
    calls = [asyncio.create_task(store.set(ref, i)) for i, ref in enumerate(refs)]
    for _ in range(20):  # loop steps: every call has run as far as it can
        await asyncio.sleep(0)
    assert len(stand_in.loops) == 2, "only max_in_flight calls reach the supervisor"
    assert store.in_flight == 2
    stand_in.gate.set()
    await asyncio.gather(*calls)
    assert len(stand_in.loops) == 5
    assert store.in_flight == 0
    assert {ref: value for ref, (value, _) in stand_in.data.items()} == {ref: i for i, ref in enumerate(refs)}


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SupervisorXComStore(loop=asyncio.new_event_loop(), ops=StandIn().ops(), max_in_flight=0)
