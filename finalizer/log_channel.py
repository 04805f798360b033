"""One job's container log on its way from the finalizer's loop to the trigger that shows it.

The task log is the trigger's own logger, on the trigger runner's event loop; the log is read on
the finalizer's loop, in another thread. Between them sits a small bounded channel per job: the
finalizer puts chunks of ready-formatted lines (a few KiB each, at most ``max_chunks`` waiting),
the trigger takes them and writes each line, yielding to its loop between chunks. A full channel
makes the reader wait, and a reader that waits stops reading the HTTP stream, so a large log never
sits in memory whole and never arrives as one burst of records on the runner's loop.

Triggers register their channel by job key before they submit the job (``open_channel``); the
pipeline finds it with ``channel_for``. No channel (a standalone finalizer, a job adopted from
another process) means nobody shows the log here: the pipeline then keeps to the short tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

#: One line for the task log: (logging level, text).
Line = tuple[int, str]

#: Default seconds a chunk may wait for room before the producer stops sending.
PUT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class LogChunk:
    lines: tuple[Line, ...]


class _Waker:
    """An ``asyncio.Event`` on one loop, set from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self.event.set)


class LogChannel:
    """A bounded, thread-safe queue of ``LogChunk`` between two event loops.

    ``want_logs`` is the operator's ``get_logs``; ``follow`` says the log should show while the pod
    runs (``logging_interval``). The producer ``put``s and finally ``end``s; the consumer ``get``s
    until None, or ``abandon``s (then every ``put`` returns False at once and the rest is dropped).
    """

    def __init__(
        self,
        *,
        want_logs: bool = True,
        follow: bool = False,
        max_chunks: int = 4,
        put_timeout: float = PUT_TIMEOUT,
    ) -> None:
        self.want_logs = want_logs
        self.follow = follow
        #: Seconds the producer waits for room before it stops sending (the consumer is stuck).
        self.put_timeout = put_timeout
        self._max = max(1, max_chunks)
        self._lock = threading.Lock()
        self._chunks: deque[LogChunk] = deque()
        self._ended = False
        self._abandoned = False
        self._reader: _Waker | None = None
        self._writer: _Waker | None = None

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def _wake(self, which: _Waker | None) -> None:
        if which is not None:
            which.wake()

    async def put(self, chunk: LogChunk, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Queue ``chunk``, waiting for room; False when the consumer is gone or no room came in
        ``timeout`` seconds (the caller then stops sending)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with self._lock:
                        if self._abandoned or self._ended:
                            return False
                        if len(self._chunks) < self._max:
                            self._chunks.append(chunk)
                            reader, self._reader = self._reader, None
                            break
                        waker = self._writer = _Waker()
                    await waker.event.wait()
        except TimeoutError:
            return False
        self._wake(reader)
        return True

    def put_last(self, chunk: LogChunk) -> bool:
        """Queue one final ``chunk`` even when full (a note that the rest was not sent), without
        waiting; False when the consumer is gone or the channel ended."""
        with self._lock:
            if self._abandoned or self._ended:
                return False
            self._chunks.append(chunk)
            reader, self._reader = self._reader, None
        self._wake(reader)
        return True

    def end(self) -> None:
        """No more chunks (idempotent); the consumer gets what is queued, then None."""
        with self._lock:
            self._ended = True
            reader, self._reader = self._reader, None
        self._wake(reader)

    def abandon(self) -> None:
        """The consumer is gone: drop what is queued, refuse the rest, release a waiting producer."""
        with self._lock:
            self._abandoned = True
            self._chunks.clear()
            writer, self._writer = self._writer, None
        self._wake(writer)

    async def get(self) -> LogChunk | None:
        """The next chunk; None once the producer ended and the queue is empty."""
        while True:
            with self._lock:
                if self._chunks:
                    chunk = self._chunks.popleft()
                    writer, self._writer = self._writer, None
                    break
                if self._ended or self._abandoned:
                    return None
                waker = self._reader = _Waker()
            await waker.event.wait()
        self._wake(writer)
        return chunk


_CHANNELS: dict[str, LogChannel] = {}
_REGISTRY_LOCK = threading.Lock()


@contextlib.contextmanager
def open_channel(job_key: str, channel: LogChannel) -> Iterator[LogChannel]:
    """Make ``channel`` the one the pipeline feeds for ``job_key`` while the block runs."""
    with _REGISTRY_LOCK:
        _CHANNELS[job_key] = channel
    try:
        yield channel
    finally:
        with _REGISTRY_LOCK:
            if _CHANNELS.get(job_key) is channel:
                del _CHANNELS[job_key]
        channel.abandon()


def channel_for(job_key: str) -> LogChannel | None:
    """The channel a trigger in this process opened for ``job_key``, if any."""
    with _REGISTRY_LOCK:
        return _CHANNELS.get(job_key)
