"""A batch job's members as one run sees them: their reads (the ledger payload), the work under way,
and small helpers over the member watch. Used by ``finalizer.batch_pipeline`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from finalizer.decisions.batch import MemberRead
from finalizer.jobs import BatchJobRef, PodRef
from finalizer.pod import PodView
from finalizer.seams import MemberWatch

#: Member pods read (and stopped) at the same time, per Job.
MEMBER_READS = 4


@dataclass(slots=True)
class Members:
    """This run's view of the members: reads (from the ledger, then new), and the work under way."""

    reads: dict[str, MemberRead]
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    vanished: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def payload(self) -> dict[str, Any]:
        return {"members": {uid: r.to_json() for uid, r in self.reads.items()}}


def stored(value: Any) -> tuple[dict[str, MemberRead], dict[str, Any]]:
    """The ledger payload of a batch job: its member reads, and the rest (``job``, ``terminal``)."""
    if not isinstance(value, dict):
        return {}, {}
    members = value.get("members") or {}
    reads = {uid: MemberRead.from_json(uid, data) for uid, data in members.items() if isinstance(data, dict)}
    return reads, {k: v for k, v in value.items() if k != "members"}


def member_ref(ref: BatchJobRef, pod: PodView) -> PodRef:
    return PodRef(
        namespace=pod.namespace or ref.namespace,
        name=pod.name,
        uid=pod.uid,
        base_container=ref.base_container,
    )


async def current(mw: MemberWatch) -> dict[str, PodView]:
    """The members as they are now, once the member watch's first LIST answered."""
    while not mw.known:
        with contextlib.suppress(TimeoutError):
            await mw.changed(1.0)
    return dict(mw.members)


def gone(mw: MemberWatch, state: Members) -> dict[str, PodView]:
    """Members seen deleted, and those whose read found them gone before the watch said so."""
    gone = dict(mw.gone)
    gone.update({uid: mw.members[uid] for uid in state.vanished if uid in mw.members})
    return gone


async def cancel(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait for them; their own errors are not the job's any more, but a
    cancellation of *this* task still propagates (``asyncio.wait`` does not swallow it)."""
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved
