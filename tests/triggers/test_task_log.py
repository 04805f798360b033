"""The per-job log channel between two real event loops (the finalizer's thread and the runner's),
and the trigger's side that writes each line to its logger."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from finalizer.log_channel import LogChannel, LogChunk, channel_for, open_channel
from triggers.task_log import finish_writing, write_lines

T = TypeVar("T")
pytestmark = pytest.mark.anyio


class OtherLoop:
    """A second event loop in its own thread, as the finalizer's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def other() -> Any:
    loop = OtherLoop()
    yield loop
    loop.close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def chunk(i: int) -> LogChunk:
    return LogChunk(((logging.INFO, f"[base] logs: {i}"), (logging.ERROR, f"[base] ERROR {i}")))


async def test_every_line_arrives_in_order_across_loops(other: OtherLoop) -> None:
    channel = LogChannel(max_chunks=2)
    logger = logging.getLogger("tests.task_log.order")
    sink = Records()
    logger.addHandler(sink)
    try:

        async def produce() -> None:
            for i in range(500):
                assert await channel.put(chunk(i), timeout=10)
            channel.end()

        done = other.run(produce())
        assert await write_lines(channel, logger) == 1000
        done.result(5)
    finally:
        logger.removeHandler(sink)
    texts = [r.getMessage() for r in sink.records]
    assert texts[:2] == ["[base] logs: 0", "[base] ERROR 0"]
    assert texts[-1] == "[base] ERROR 499"
    assert [r.levelno for r in sink.records[:2]] == [logging.INFO, logging.ERROR]


async def test_a_full_channel_holds_the_producer(other: OtherLoop) -> None:
    """Back-pressure: with nobody reading, at most ``max_chunks`` wait; the producer waits too."""
    channel = LogChannel(max_chunks=3)
    put: list[int] = []
    fourth = threading.Event()

    async def produce() -> None:
        for i in range(10):
            if i == 3:
                fourth.set()
            await channel.put(chunk(i), timeout=10)
            put.append(i)

    async def barrier() -> None:
        """Runs on the producer's loop: after its fourth put either waits for room, or (no bound)
        has put all ten, since a put with room never yields to the loop."""

    done = other.run(produce())
    assert await asyncio.to_thread(fourth.wait, 10)
    await asyncio.wrap_future(other.run(barrier()))
    assert put == [0, 1, 2]
    assert not done.done()
    first = await channel.get()
    assert first == chunk(0)
    channel.abandon()  # the trigger went away: the waiting producer is released, the rest refused
    done.result(5)
    assert await channel.get() is None


async def test_put_gives_up_after_its_timeout() -> None:
    channel = LogChannel(max_chunks=1)
    assert await channel.put(chunk(0), timeout=1)
    assert not await channel.put(chunk(1), timeout=0.05)


async def test_registry_is_per_job_and_abandons_on_exit() -> None:
    channel = LogChannel()
    with open_channel("ti:1:uid", channel):
        assert channel_for("ti:1:uid") is channel
        assert channel_for("ti:2:uid") is None
    assert channel_for("ti:1:uid") is None
    assert channel.abandoned
    assert not await channel.put(chunk(0), timeout=1)


async def test_a_failing_log_writer_is_only_a_warning() -> None:
    """The pod may be gone by the time the log is written: an error there must not reach the
    trigger (which would then take the classic path and find no pod)."""

    class Broken(logging.Logger):
        def log(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("handler exploded")

    broken = Broken("tests.task_log.broken")
    sink = Records()
    broken.addHandler(sink)
    channel = LogChannel()
    writer = asyncio.get_running_loop().create_task(write_lines(channel, broken))
    assert await channel.put(chunk(0), timeout=1)
    await finish_writing(channel, writer, broken)  # does not raise
    assert [r.levelno for r in sink.records] == [logging.WARNING]
    assert "could not be written" in sink.records[0].getMessage()
