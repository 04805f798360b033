"""One object (a pod, a batch/v1 Job) on a shared watch: its latest state, and waiting on it.

Level-based: a subscription holds the newest state seen (by resourceVersion), never a queue
of events, so a slow subscriber costs no memory and cannot miss a finished pod. An object is
"gone" for good once its uid has left the name; ``wait`` then answers None at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from finalizer.batch_job import BatchJobView
from finalizer.exceptions import FinalizerError
from finalizer.pod import PodView


class View(Protocol):
    """What the watch reads of any object view (``PodView``, ``BatchJobView``)."""

    @property
    def name(self) -> str: ...

    @property
    def uid(self) -> str: ...

    @property
    def resource_version(self) -> str: ...


V = TypeVar("V", bound=View)


def rv_newer(candidate: str, known: str | None) -> bool:
    """Whether resourceVersion ``candidate`` is newer than ``known``.

    resourceVersions are opaque, but every real store hands out increasing integers; when
    either is not one we cannot tell, and the fresher-looking delivery wins.
    """
    if not known:
        return True
    if candidate.isdigit() and known.isdigit():
        return int(candidate) > int(known)
    return True


class ObjectSubscription(Generic[V]):
    """One object on a shared watch: its latest state, and a way to wait for a condition."""

    #: How gone reasons name the object ("pod", "Job").
    noun = "object"

    def __init__(self, namespace: str, name: str, uid: str, seq: int) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.seq = seq
        self._latest: V | None = None
        self._known = False
        self._gone: str | None = None
        self._error: FinalizerError | None = None
        self._changed = asyncio.Event()
        self._resolver: asyncio.Task[None] | None = None

    @property
    def latest(self) -> V | None:
        """The latest state seen; None while unknown and once the object is gone."""
        return None if self._gone else self._latest

    @property
    def last_seen(self) -> V | None:
        """The last state seen, kept once the object is gone (a Job deleted by its TTL right after
        it finished still says how it ended)."""
        return self._latest

    @property
    def known(self) -> bool:
        return self._known or self._gone is not None

    @property
    def gone(self) -> bool:
        return self._gone is not None

    @property
    def gone_reason(self) -> str | None:
        return self._gone

    @property
    def error(self) -> FinalizerError | None:
        """Why the watch cannot serve this object right now (cleared when it recovers)."""
        return self._error

    async def wait(
        self,
        predicate: Callable[[V], bool],
        timeout: float | None = None,  # noqa: ASYNC109 - the documented signature
    ) -> V | None:
        """The first state for which ``predicate`` holds, or None as soon as the object is gone.

        Raises ``TimeoutError`` after ``timeout`` seconds, and the watch's terminal error
        (e.g. 403) if the watch cannot serve this object at all.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._gone is not None:
                    return None
                if self._error is not None:
                    raise self._error
                if self._known and self._latest is not None and predicate(self._latest):
                    return self._latest
                self._changed.clear()
                await self._changed.wait()

    # --- fed by the stream -----------------------------------------------------------------
    def _observe(self, obj: V, *, authoritative: bool) -> None:
        """A state of the object holding our name. ``authoritative``: it is current, not a replay."""
        if self._gone is not None:
            return
        if obj.uid == self.uid:
            if self._latest is None or rv_newer(obj.resource_version, self._latest.resource_version):
                self._latest = obj
                self._known = True
            self._error = None
            self._changed.set()
        elif authoritative or (
            self._latest is not None and rv_newer(obj.resource_version, self._latest.resource_version)
        ):
            self.set_gone(f"the name {self.name} now belongs to {self.noun} uid {obj.uid}")

    def set_gone(self, reason: str) -> None:
        if self._gone is None:
            self._gone = reason
            self._changed.set()

    def _fail(self, error: FinalizerError) -> None:
        self._error = error
        self._changed.set()


class Subscription(ObjectSubscription[PodView]):
    """One pod on the shared pod watch."""

    noun = "pod"


class JobSubscription(ObjectSubscription[BatchJobView]):
    """One batch/v1 Job on the shared Job watch (``finalizer.seams.BatchJobWatch``)."""

    noun = "Job"
