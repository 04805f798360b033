"""The base container's log, from the cluster to a job's ``LogChannel``: whole, capped, in chunks.

Two ways, as upstream shows the log:

- ``ship_all``: once the pod ended, one ``follow=false`` read of the whole log, each line as
  ``[base] logs: …`` (upstream's ``trigger_reentry`` with ``get_logs``).
- ``follow``: while the pod runs (``logging_interval``), ONE ``follow=true`` stream per pod, each
  line as ``[base] …`` at the level its prefix names (the provider's trigger), reopened where it
  stopped if the connection drops while the container still runs. Not a poll.

Either way the cap (``[kpo_finalizer] log_max_bytes``) ends the log with one "truncated" line.
Lines are parsed and formatted here, on the finalizer's loop; the trigger only writes them. A
channel that stays full past ``PUT_TIMEOUT`` (the trigger's loop is stuck) ends the log early.
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
from finalizer.pod import PodView
from finalizer.seams import ClusterOps, PodWatch

log = logging.getLogger(__name__)

#: Seconds a chunk may wait for room in the channel before the log is given up.
PUT_TIMEOUT = 60.0
#: Backoff before reopening a follow stream cut by a transient error (transport, 5xx, 429).
REOPEN_POLICY = RetryPolicy(base_delay=1.0, max_delay=30.0, deadline=None)


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
        self._noted = False  # the truncation line was written
        #: ``follow`` gave up on a 4xx: the whole log is read once the pod ended (``ship_all``).
        self.fell_back = False
        #: Lines the cursor counted as written whose put was interrupted (a cancelled follower).
        self._unsent: list[Line] = []

    async def _put(self, lines: list[Line]) -> None:
        if lines and self._open:
            self._unsent = lines
            self._open = await self._channel.put(LogChunk(tuple(rules.records(lines))), PUT_TIMEOUT)
            self._unsent = []

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
            if self.cursor.truncated or not self._open:
                return

    async def _finish(self) -> None:
        if self.cursor.truncated and not self._noted:
            self._noted = True
            await self._put(
                [(logging.WARNING, rules.truncated_line(self._pod.base_container, self.cursor.cap))]
            )

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
        while self._open and not self.cursor.truncated:
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
        if self._open and not self.cursor.truncated:
            try:
                await self._read(follow=False, live=True)
            except (PodNotFoundError, KubeRequestError):
                pass  # gone, or never started (400): no log to show
            except FinalizerError as exc:
                await self._put([(logging.WARNING, f"Reading of logs interrupted with error {exc}")])
        await self._finish()
