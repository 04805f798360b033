"""The base container's log, from the cluster to a job's ``LogChannel``: whole, capped, in chunks.

Two ways, as upstream shows the log:

- ``ship_all``: once the pod ended, one ``follow=false`` read of the whole log, each line as
  ``[base] logs: …`` (upstream's ``trigger_reentry`` with ``get_logs``).
- ``follow``: while the pod runs (``logging_interval``), ONE ``follow=true`` stream per pod, each
  line as ``[base] …`` at the level its prefix names (the provider's trigger), reopened where it
  stopped if the connection drops while the container still runs. Not a poll.

Either way the cap (``[kpo_finalizer] log_max_bytes``) ends the log with one "truncated" line.
Lines are parsed and formatted here, on the finalizer's loop; the trigger only writes them. A
channel that stays full past its ``put_timeout`` (the trigger's loop is stuck) stops the sending:
the rest of the log is still read, only counted, and the task log ends with one line saying how
many bytes were not shown (also ``kpo_finalizer.log_bytes_unshown``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from api_client.backoff import RetryPolicy
from finalizer.decisions import logs as rules
from finalizer.exceptions import FinalizerError, KubeRequestError, KubeTransientError, PodNotFoundError
from finalizer.jobs import PodRef
from finalizer.log_channel import Line, LogChannel, LogChunk
from finalizer.metrics import METRICS
from finalizer.pod import PodView
from finalizer.seams import ClusterOps, PodWatch

log = logging.getLogger(__name__)

#: Backoff before reopening a follow stream cut by a transient error (transport, 5xx, 429).
REOPEN_POLICY = RetryPolicy(base_delay=1.0, max_delay=30.0, deadline=None)


def unshown_line(container: str, unshown: int, timeout: float) -> str:
    """What the task log says where a stuck trigger's loop made the finalizer stop sending."""
    return (
        f"[{container}] {unshown} bytes of the container log were not shown because the task log "
        f"took none of it for {timeout:.0f} s (the triggerer's event loop was blocked or overloaded); "
        "the rest is in the container's log on the cluster while the pod exists"
    )


def _started(base: str) -> Callable[[PodView], bool]:
    def check(pod: PodView) -> bool:
        container = pod.container(base)
        return container is not None and container.state in ("running", "terminated")

    return check


def base_ended(pod: PodView | None, base: str) -> bool:
    """The base container terminated, or the pod is gone: a follow stream of it ends by itself."""
    if pod is None:
        return True
    container = pod.container(base)
    return container is not None and container.state == "terminated"


class ContainerLog:
    """One job's log shipping; ``cursor`` knows what was written so far (across reopenings)."""

    def __init__(self, cluster: ClusterOps, pod: PodRef, channel: LogChannel, cap: int) -> None:
        self._cluster = cluster
        self._pod = pod
        self._channel = channel
        self.cursor = rules.Cursor(cap=cap)
        self._open = True  # the channel still takes chunks
        self._stalled = False  # the channel stayed full: the rest is counted, not sent
        self._shown = 0  # cursor bytes in the chunks the channel took
        self._noted = False  # the closing line(s) were written
        #: ``follow`` gave up on a 4xx: the whole log is read once the pod ended (``ship_all``).
        self.fell_back = False
        #: Lines the cursor counted as written whose put was interrupted (a cancelled follower).
        self._unsent: list[Line] = []

    async def _put(self, lines: list[Line]) -> None:
        if not lines or not self._open:
            return
        self._unsent = lines
        chunk = LogChunk(tuple(rules.records(lines)))
        self._open = await self._channel.put(chunk, self._channel.put_timeout)
        self._unsent = []
        if self._open:
            self._shown = self.cursor.written
        elif not self._channel.abandoned:  # no room in time: the trigger's loop is stuck
            self._stalled = True
            log.warning(
                "pod %s: the task log took no log chunk for %.0fs; the rest of the log is counted, not shown",
                self._pod.name,
                self._channel.put_timeout,
            )

    def _reading(self) -> bool:
        """Reading goes on while the channel takes chunks, or to count what a stuck one misses."""
        stalled = self._stalled and not self._channel.abandoned
        return (self._open or stalled) and not self.cursor.truncated

    async def _read(self, *, follow: bool, live: bool) -> None:
        """One stream, every new line into the channel; stops early at the cap or a closed channel."""
        container = self._pod.base_container
        since = self.cursor.since_seconds(time.time_ns())
        if since is not None:
            self.cursor.reopened()
        async for batch in self._cluster.log_lines(self._pod, follow=follow, since_seconds=since):
            out: list[Line] = []
            for raw in batch:
                stamp, message = rules.split_stamp(raw)
                if not self.cursor.take(stamp, message):
                    if self.cursor.truncated:
                        break
                    continue
                line = rules.shown(container, message, live=live)
                if line is not None:  # an empty line still moves the cursor, as upstream's marker
                    out.append(line)
            await self._put(out)
            if not self._reading():
                return

    async def _finish(self) -> None:
        if self._noted:
            return
        base = self._pod.base_container
        closing: list[Line] = []
        if self._stalled:
            unshown = self.cursor.written - self._shown
            METRICS.log_bytes_unshown.inc(unshown)
            closing.append((logging.WARNING, unshown_line(base, unshown, self._channel.put_timeout)))
        if self.cursor.truncated:
            closing.append((logging.WARNING, rules.truncated_line(base, self.cursor.cap)))
        if not closing:
            return
        self._noted = True
        if self._stalled:  # past the bound, once: the trigger writes it after what it has
            self._channel.put_last(LogChunk(tuple(closing)))
        else:
            await self._put(closing)

    async def ship_all(self) -> None:
        """The whole log of an ended container (what ``follow`` did not write yet)."""
        try:
            await self._read(follow=False, live=False)
        except (PodNotFoundError, KubeRequestError):
            return  # gone, or never started (400): nothing to show, the outcome says why
        except FinalizerError as exc:
            await self._put([(logging.WARNING, f"Reading of logs interrupted with error {exc}")])
        await self._finish()

    async def follow(self, sub: PodWatch) -> None:
        """Show the log while the pod runs: one follow stream, reopened only after a failure.

        A stream that broke after the container ended is made up by one last read from where
        the log stopped.
        """
        base = self._pod.base_container
        whole = False  # the last stream ended by itself (with the container)
        failures = 0  # transient failures in a row, for the backoff
        while self._reading():
            whole = False
            written = self.cursor.written
            try:
                if await sub.wait(_started(base), None) is None:
                    break  # gone before it started
                await self._read(follow=True, live=True)
                whole = True
            except PodNotFoundError:
                break
            except KubeTransientError as exc:  # a broken stream, 5xx, 429: reopen after a backoff
                failures = 1 if self.cursor.written > written else failures + 1
                delay = REOPEN_POLICY.delay(failures, exc.retry_after)
                log.debug(
                    "pod %s: log stream interrupted (%s); reopening in %.1fs", self._pod.name, exc, delay
                )
                with contextlib.suppress(TimeoutError):  # the container's end cuts the wait short
                    await sub.wait(lambda pod: base_ended(pod, base), delay)
            except FinalizerError as exc:  # a 4xx (RBAC …): reopening cannot help
                await self._put(
                    [
                        (
                            logging.WARNING,
                            f"[{base}] the live log stopped ({exc}); the log is read once the pod ended",
                        )
                    ]
                )
                self.fell_back = True
                return
            if base_ended(sub.latest, base):
                break
        if not whole and sub.latest is not None:
            await self.catch_up()
            return
        await self._finish()

    async def catch_up(self) -> None:
        """What a broken or abandoned follow stream missed: one read from where the log stopped."""
        if self._unsent:  # counted by the cursor, but the follower was stopped before it queued them
            await self._put(self._unsent)
        if self._reading():
            try:
                await self._read(follow=False, live=True)
            except (PodNotFoundError, KubeRequestError):
                pass  # gone, or never started (400): no log to show
            except FinalizerError as exc:
                await self._put([(logging.WARNING, f"Reading of logs interrupted with error {exc}")])
        await self._finish()
