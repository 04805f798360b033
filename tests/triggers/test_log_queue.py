"""The finalizer's log records leave its thread through a bounded queue: a blocked sink never blocks it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from triggers.log_queue import OffThreadLogs


class _Sink(logging.Handler):
    """A root handler that can be held blocked, like a log socket nobody reads."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.released = threading.Event()
        self.entered = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.released.wait(30)
        self.records.append(record)


@pytest.fixture
def sink() -> Iterator[_Sink]:
    root = logging.getLogger()
    handler, level = _Sink(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    handler.released.set()
    root.removeHandler(handler)
    root.setLevel(level)


def test_records_reach_the_root_handlers_unchanged(sink: _Sink) -> None:
    sink.released.set()
    logs = OffThreadLogs()
    logs.start()
    try:
        logging.getLogger("finalizer.service").warning("job %s: %s", "k1", "careful")
        logging.getLogger("api_client.supervisor").info("set %s", "ref")
    finally:
        logs.stop()  # flushes the queue
    got = [(r.name, r.levelno, r.getMessage()) for r in sink.records]
    assert got == [
        ("finalizer.service", logging.WARNING, "job k1: careful"),
        ("api_client.supervisor", logging.INFO, "set ref"),
    ]
    assert logging.getLogger("finalizer").propagate is True, "stop restores the loggers"


def test_a_blocked_sink_never_blocks_the_logging_thread(sink: _Sink) -> None:
    logs = OffThreadLogs(maxsize=10)
    logs.start()
    try:
        logging.getLogger("finalizer.pipeline").info("first")
        assert sink.entered.wait(10), "the listener is now blocked in the sink"
        finalizer_thread = threading.Thread(
            target=lambda: [logging.getLogger("finalizer.pipeline").info("n=%d", n) for n in range(1000)]
        )
        finalizer_thread.start()
        finalizer_thread.join(10)
        assert not finalizer_thread.is_alive(), "logging blocked while the sink was blocked"
        assert logs.dropped == 1000 - 10, "beyond the bound, records are dropped and counted"
    finally:
        sink.released.set()
        logs.stop()
    messages = [r.getMessage() for r in sink.records]
    assert messages[:11] == ["first"] + [f"n={n}" for n in range(10)]
    assert "990 log record(s) dropped" in messages[-1]
