"""The finalizer's own log records, off its thread, through a bounded queue, inside the triggerer.

In the trigger runner every log record crosses a socket to the supervisor, and a supervisor busy
elsewhere stops reading it. A thread that logs then blocks in the write while holding the log
handler's lock — and the runner's event loop blocks on that lock the next time it logs. Seen in
``bench triggerer`` on a restart: the finalizer's thread blocked in a log write, the runner's loop
waited on the lock, and the supervisor, itself blocked sending the runner a message the loop never
read, stopped heartbeating: the whole triggerer stalled for tens of seconds.

So while the finalizer runs in a runner, records of the ``finalizer`` and ``api_client`` loggers
go into a bounded queue (never blocking the thread that logs), and a listener thread hands them
to the root logger's handlers, as before. When the queue is full the record is dropped and
counted; the count is logged once at the end. Records keep their logger name, level and
message; the task's own log (the trigger's ``self.log``) is not routed here.

**Which log a record lands in.** Airflow 3.3.2's runner binds the trigger's id into structlog's
context variables when it starts each trigger (``bind_contextvars(trigger_id=…)`` in
``TriggerRunner.run_trigger``); the stdlib handler merges them when it formats a record, and the
supervisor writes a record that carries a ``trigger_id`` to that trigger's task log, every other
record to the triggerer's own log. A task created from a trigger's task copies its context, so
the finalizer's process-wide work (start-up, the guard that drains it, the channel warm-up) would
log into whichever task's log started it. ``process_wide`` gives such work a fresh, empty context:
its lines go to the triggerer's log. The listener thread above has an empty context already
(threads do not inherit context variables), so the finalizer's own records go there too.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import queue

#: The loggers whose records leave their thread through the queue.
ROUTED = ("finalizer", "api_client")

log = logging.getLogger(__name__)

#: How long ``stop`` waits for room to queue its end marker (seconds).
STOP_WAIT = 5.0


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    """``QueueHandler`` that drops (and counts) instead of blocking or raising when full."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(records)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Listener(logging.handlers.QueueListener):
    """A ``QueueListener`` whose ``stop`` never hangs: it waits ``STOP_WAIT`` s for room in a full
    queue (the sink may be catching up) and as long for the thread, then gives up."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None], handler: logging.Handler) -> None:
        super().__init__(records, handler)
        self._records = records

    def enqueue_sentinel(self) -> None:
        try:
            self._records.put(None, timeout=STOP_WAIT)  # None: QueueListener's end marker
        except queue.Full:
            log.warning("kpo-finalizer: log queue still full after %gs; unsent records left", STOP_WAIT)

    def stop(self) -> None:
        self.enqueue_sentinel()
        if self._thread is not None:
            self._thread.join(STOP_WAIT)
            self._thread = None


class _ToRoot(logging.Handler):
    """On the listener's thread: the root logger's handlers, whatever they are by then."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


class OffThreadLogs:
    """Route ``ROUTED`` loggers through a bounded queue while started; ``stop`` restores them."""

    def __init__(self, maxsize: int = 10_000, names: tuple[str, ...] = ROUTED) -> None:
        self._records: queue.Queue[logging.LogRecord | None] = queue.Queue(maxsize)
        self._handler = _BoundedQueueHandler(self._records)
        self._listener = _Listener(self._records, _ToRoot())
        self._names = names
        self._propagate: dict[str, bool] = {}

    @property
    def dropped(self) -> int:
        return self._handler.dropped

    def start(self) -> None:
        if self._propagate:
            return
        for name in self._names:
            logger = logging.getLogger(name)
            self._propagate[name] = logger.propagate
            logger.addHandler(self._handler)
            logger.propagate = False
        self._listener.start()

    def stop(self) -> None:
        """Flush what is queued, restore the loggers, and say how many records were dropped."""
        if not self._propagate:
            return
        for name, propagate in self._propagate.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self._handler)
            logger.propagate = propagate
        self._propagate.clear()
        self._listener.stop()
        if self.dropped:
            log.warning("kpo-finalizer: %d log record(s) dropped while the supervisor was busy", self.dropped)


def process_wide() -> contextvars.Context:
    """A context with no trigger bound: what runs in it logs to the triggerer's own log."""
    return contextvars.Context()
