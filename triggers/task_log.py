"""The container's log in the task log: the trigger's side of a job's ``LogChannel``.

What the trigger's logger writes is what Airflow shows in the task log (the triggerer routes each
record by the trigger's id). The finalizer reads and formats the log on its own loop and hands it
over in small chunks (``finalizer.log_channel``) of records of up to 100 lines, each line as
upstream writes it; here, on the runner's loop, each record is written, and the loop gets a turn
between chunks so no trigger waits behind a large log. Every line is written before the outcome line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from finalizer.jobs import JobSpec, Outcome
from finalizer.log_channel import LogChannel, open_channel
from triggers.runtime import finalize


async def write_lines(channel: LogChannel, log: logging.Logger) -> int:
    """Write every record the channel brings until it ends; returns how many log lines they held."""
    written = 0
    while (chunk := await channel.get()) is not None:
        for level, text in chunk.lines:
            log.log(level, text)
            written += text.count("\n") + 1
        await asyncio.sleep(0)  # the runner's other triggers between chunks
    return written


async def finalize_with_log(job: JobSpec, log: logging.Logger, *, get_logs: bool, follow: bool) -> Outcome:
    """``finalize(job)``, with the base container's log written to ``log`` on the way.

    ``get_logs`` is the operator's (False: no log at all); ``follow`` shows the log while the pod
    runs (the operator's ``logging_interval``).
    """
    channel = LogChannel(want_logs=get_logs, follow=follow and get_logs)
    with open_channel(job.key, channel):
        writer = asyncio.get_running_loop().create_task(write_lines(channel, log), name="kpo-finalizer-log")
        try:
            outcome = await finalize(job)
        except BaseException:
            channel.abandon()
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
            raise
        await finish_writing(channel, writer, log)
    return outcome


async def finish_writing(channel: LogChannel, writer: asyncio.Task[int], log: logging.Logger) -> None:
    """End the channel (everything the job sent is queued by now) and let the writer finish.

    The log is best effort: an error writing it is a warning, never the task's outcome (the pod
    may be gone by then, so the classic path would find nothing).
    """
    channel.end()
    try:
        await writer
    except Exception:
        log.warning("kpo-finalizer: the container's log could not be written", exc_info=True)
