"""The LIST+WATCH loop of one (resource, namespace, label selector), feeding its subscriptions.

We write the loop ourselves because ``kubernetes_asyncio.watch.Watch`` ignores HTTP status,
loses ``Retry-After`` and mishandles 410: LIST (paged) on (re)start, then WATCH from its
resourceVersion with bookmarks; ERROR 410 (or an expired continue token) means re-LIST;
transport errors, 5xx and 429 reconnect from the last resourceVersion after a jittered
backoff that honours ``Retry-After``; a periodic re-LIST is the safety net. The resource
(pods, batch/v1 Jobs) is a ``finalizer.kube.resource.Resource``: one loop for both.

Subscriptions are by name + uid, and (pods only) by owner: a Job's pods, by their
controller-uid label (``finalizer.kube.members``).

Lines for objects nobody subscribed to are dropped after a regex scan
(:func:`finalizer.kube.prefilter.unwanted_event`): no parse, no ``PodView``, no ``V1Pod``,
nothing kept; their resourceVersion still advances ours.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

import aiohttp

from api_client.backoff import retry_async
from finalizer.exceptions import FinalizerError, KubeError, KubeTransientError
from finalizer.kube.config import KubeSettings
from finalizer.kube.errors import error_for_status, kube_errors
from finalizer.kube.members import OWNER_LABELS, MemberSubscription
from finalizer.kube.prefilter import unwanted_event
from finalizer.kube.resource import Resource
from finalizer.kube.responses import parse_object, raise_for_response, read_body
from finalizer.kube.subscription import ObjectSubscription, V
from finalizer.pod import JSON, PodView

log = logging.getLogger(__name__)

__all__ = ["StreamStats", "WatchExpiredError", "WatchStream", "unwanted_event"]

MAX_LIST_BYTES = 512 * 1024 * 1024


class WatchExpiredError(Exception):
    """The watch's resourceVersion is older than the server keeps (410): re-LIST."""


@dataclass
class StreamStats:
    lists: int = 0
    watches_opened: int = 0
    events: int = 0
    events_dropped: int = 0
    bookmarks: int = 0
    expired: int = 0
    errors: int = 0
    resolves: int = 0
    last_error: str | None = None


@dataclass
class WatchStream(Generic[V]):
    """The LIST+WATCH of one (resource, namespace, selector)."""

    resource: Resource[V]
    settings: KubeSettings
    limiter: asyncio.Semaphore
    namespace: str
    selector: str | None
    subs: dict[str, list[ObjectSubscription[V]]] = field(default_factory=dict)
    #: Member subscriptions (a Job's pods) by owner uid; pods only.
    owners: dict[str, list[MemberSubscription]] = field(default_factory=dict)
    stats: StreamStats = field(default_factory=StreamStats)
    resource_version: str | None = None
    seq: int = 0
    #: Highest ``Subscription.seq`` registered when the last LIST went out (None: no LIST yet).
    list_seq: int | None = None
    task: asyncio.Task[None] | None = None
    resolvers: set[asyncio.Task[None]] = field(default_factory=set)
    next_resync: float = 0.0

    @property
    def what(self) -> str:
        sel = f" ({self.selector})" if self.selector else ""
        return f"{self.resource.plural} in {self.namespace}{sel}"

    @property
    def empty(self) -> bool:
        return not self.subs and not self.owners

    # --- membership ----------------------------------------------------------------------------
    def add(self, name: str, uid: str) -> ObjectSubscription[V]:
        self.seq += 1
        sub = self.resource.subscription(self.namespace, name, uid, self.seq)
        self.subs.setdefault(name, []).append(sub)
        if self.list_seq is not None:
            # A LIST already went out without this object in mind: ask for it once.
            self._spawn(sub, self._resolve(sub), f"{sub.namespace}/{sub.name}")
        self._start()
        return sub

    def add_members(self, owner: str) -> MemberSubscription:
        """Follow the pods whose controller-uid label is ``owner`` (a Job's uid)."""
        if self.resource.owner_of is None:
            raise TypeError(f"{self.resource.plural} have no members")
        self.seq += 1
        sub = MemberSubscription(self.namespace, owner, self.seq)
        self.owners.setdefault(owner, []).append(sub)
        if self.list_seq is not None:
            self._spawn(sub, self._resolve_members(sub), f"{sub.namespace} members of {owner}")
        self._start()
        return sub

    def _start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name=f"kube-watch {self.what}")

    def remove(self, sub: ObjectSubscription[V] | MemberSubscription) -> None:
        if sub._resolver is not None:
            sub._resolver.cancel()
        if isinstance(sub, MemberSubscription):
            key, table = sub.owner, self.owners
        else:
            key, table = sub.name, self.subs  # type: ignore[assignment]
        same_key: list[Any] = table.get(key, [])
        if sub in same_key:
            same_key.remove(sub)
        if not same_key:
            table.pop(key, None)

    def _spawn(self, sub: ObjectSubscription[V] | MemberSubscription, coro: Any, label: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"kube-resolve {label}")
        sub._resolver = task
        self.resolvers.add(task)
        task.add_done_callback(self.resolvers.discard)

    def _transient(self, exc: BaseException) -> float | None:
        return (exc.retry_after or 0.0) if isinstance(exc, KubeTransientError) else None

    async def _resolve(self, sub: ObjectSubscription[V]) -> None:
        """GET one late subscriber's object (the watch only reports changes)."""
        self.stats.resolves += 1
        noun = self.resource.noun
        try:
            obj = await retry_async(
                lambda: self.resource.read(sub.namespace, sub.name),
                self.settings.resolve_retry,
                self._transient,
            )
        except self.resource.not_found:
            sub.set_gone(f"{noun} {sub.namespace}/{sub.name} not found")
        except FinalizerError as exc:
            if not sub.known:
                sub._fail(exc)
        else:
            sub._observe(obj, authoritative=True)

    async def _resolve_members(self, sub: MemberSubscription) -> None:
        """LIST one late member subscriber's pods by label (the watch only reports changes).

        By the current label, and by the legacy one when that finds none (clusters before 1.27).
        """
        self.stats.resolves += 1
        try:
            for label in OWNER_LABELS:
                items, list_rv = await retry_async(
                    lambda label=label: self._list_all(f"{label}={sub.owner}"),  # type: ignore[misc]
                    self.settings.resolve_retry,
                    self._transient,
                )
                if items:
                    break
        except FinalizerError as exc:
            if not sub.known:
                sub._fail(exc)
        else:
            sub._listed([PodView(item) for item in items], list_rv)

    def stop(self) -> list[asyncio.Task[None]]:
        tasks = [*self.resolvers, *([self.task] if self.task else [])]
        for task in tasks:
            task.cancel()
        return tasks

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        attempt = 0
        need_list = True
        policy = self.settings.watch_retry
        while not self.empty:
            try:
                if need_list or time.monotonic() >= self.next_resync:
                    await self._list()
                    need_list = False
                await self._watch_once()
                attempt = 0
            except WatchExpiredError:
                self.stats.expired += 1
                need_list = True
                attempt += 1
                if attempt > 1:  # 410 right after a fresh LIST: do not spin
                    await asyncio.sleep(policy.delay(attempt - 1))
            except Exception as exc:
                if not isinstance(exc, FinalizerError):
                    # A bug or an unforeseen answer: never die silently with subscribers waiting.
                    log.exception("watch loop of %s failed unexpectedly", self.what)
                    exc = KubeError(f"watch of {self.what} failed unexpectedly: {exc!r}")
                attempt += 1
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                retry_after = exc.retry_after if isinstance(exc, KubeTransientError) else None
                if not isinstance(exc, KubeTransientError):
                    log.error("watch of %s failed: %s", self.what, exc)
                    for subs in self.subs.values():
                        for sub in subs:
                            sub._fail(exc)
                    for members in self.owners.values():
                        for member in members:
                            member._fail(exc)
                else:
                    log.info("watch of %s interrupted: %s", self.what, exc)
                await asyncio.sleep(policy.delay(attempt, retry_after))

    def _owner(self, obj: JSON) -> str | None:
        return self.resource.owner_of(obj) if self.resource.owner_of is not None else None

    def _wanted(self, obj: JSON) -> bool:
        return (obj.get("metadata") or {}).get("name") in self.subs or self._owner(obj) in self.owners

    async def _list(self) -> None:
        """LIST (paged) and bring every subscriber up to date; returns with a fresh resourceVersion."""
        list_seq = self.seq
        self.list_seq = list_seq
        items, resource_version = await self._list_all(self.selector, self._wanted)
        self.stats.lists += 1
        self.resource_version = resource_version
        self.next_resync = time.monotonic() + self.settings.resync_seconds * (0.9 + 0.2 * random.random())
        by_name: dict[str, JSON] = {}
        by_owner: dict[str, list[PodView]] = {}
        for item in items:
            by_name[str((item.get("metadata") or {}).get("name"))] = item
            owner = self._owner(item)
            if owner in self.owners:
                by_owner.setdefault(str(owner), []).append(PodView(item))
        noun = self.resource.noun
        for name, subs in list(self.subs.items()):
            listed = by_name.get(name)
            obj = self.resource.view(listed) if listed is not None else None
            for sub in list(subs):
                judged = sub.seq <= list_seq
                if obj is not None:
                    sub._observe(obj, authoritative=judged)
                elif judged:
                    sub.set_gone(f"{noun} {sub.namespace}/{sub.name} is not in the LIST of {self.what}")
        for owner, members in list(self.owners.items()):
            pods = by_owner.get(owner, [])
            for member in list(members):
                if member.seq <= list_seq:
                    member._listed(pods, None)
                else:  # registered while the LIST was out: its own resolve LIST judges absence
                    for pod in pods:
                        member._observe(pod)

    async def _list_all(
        self, selector: str | None, keep: Callable[[JSON], bool] | None = None
    ) -> tuple[list[JSON], str | None]:
        """Every page of one LIST: the items ``keep`` keeps (all by default), and its resourceVersion."""
        items: list[JSON] = []
        token: str | None = None
        resource_version = ""
        while True:
            kwargs: dict[str, Any] = {}
            if selector:
                kwargs["label_selector"] = selector
            if self.settings.list_page_size:
                kwargs["limit"] = self.settings.list_page_size
            if token:
                kwargs["_continue"] = token
            page = await self._list_page(**kwargs)
            meta = page.get("metadata") or {}
            resource_version = resource_version or str(meta.get("resourceVersion") or "")
            items.extend(item for item in page.get("items") or [] if keep is None or keep(item))
            token = meta.get("continue") or None
            if not token:
                break
        return items, resource_version or None

    async def _list_page(self, **kwargs: Any) -> JSON:
        what = f"list {self.what}"
        not_found = self.resource.not_found
        async with self.limiter:
            with kube_errors(what, not_found):
                response: aiohttp.ClientResponse = await self.resource.list_call(
                    self.namespace,
                    _preload_content=False,
                    _request_timeout=self.settings.request_timeout,
                    **kwargs,
                )
                if response.status == 410:  # the continue token expired
                    response.release()
                    raise WatchExpiredError(what)
                await raise_for_response(response, what=what, not_found=not_found)
                body = await read_body(response, MAX_LIST_BYTES, what=what)
        return parse_object(body, what=what, expected=self.resource.list_kind)

    async def _watch_once(self) -> None:
        """One WATCH request, until the server ends it (``timeoutSeconds``) or it breaks."""
        what = f"watch {self.what}"
        timeout = int(self.settings.watch_timeout_seconds * (1 + 0.5 * random.random()))
        kwargs: dict[str, Any] = {}
        if self.selector:
            kwargs["label_selector"] = self.selector
        if self.resource_version:
            kwargs["resource_version"] = self.resource_version
        with kube_errors(what, self.resource.not_found):
            response: aiohttp.ClientResponse = await self.resource.list_call(
                self.namespace,
                watch=True,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout,
                _preload_content=False,
                _request_timeout=(self.settings.connect_timeout, timeout + self.settings.watch_stall_margin),
                **kwargs,
            )
            self.stats.watches_opened += 1
            try:
                if response.status == 410:
                    raise WatchExpiredError(what)
                await raise_for_response(response, what=what, not_found=self.resource.not_found)
                async for line in response.content:
                    self._on_line(line)
                    if self.empty:
                        return
            except ValueError as exc:  # a line over aiohttp's read buffer: we lost an event
                raise WatchExpiredError(f"{what}: {exc}") from exc
            finally:
                response.release()

    def _on_line(self, line: bytes) -> None:
        """Apply one watch event. Objects nobody subscribed to cost a regex scan, not a parse."""
        if not line.strip():
            return
        skip, resource_version = unwanted_event(line, self.subs, self.owners)
        if skip:
            self.resource_version = resource_version or self.resource_version
            self.stats.events += 1
            self.stats.events_dropped += 1
            return
        try:
            event = json.loads(line)
            kind = event["type"]
            obj = event["object"]
            meta = obj.get("metadata") or {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KubeTransientError(f"watch {self.what}: malformed event line") from exc
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise WatchExpiredError(str(obj.get("message") or "resourceVersion expired"))
            raise _status_error(obj, f"watch {self.what}")
        resource_version = meta.get("resourceVersion")
        if resource_version:
            self.resource_version = str(resource_version)
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
            return
        self.stats.events += 1
        subs = self.subs.get(str(meta.get("name")))
        owner = self._owner(obj)
        members = self.owners.get(owner) if owner is not None else None
        if not subs and not members:
            self.stats.events_dropped += 1
            return
        if subs:
            self._apply(kind, self.resource.view(obj), subs)
        if members:
            pod = PodView(obj)
            for member in list(members):
                if kind == "DELETED":
                    member._deleted(pod)
                else:
                    member._observe(pod)

    def _apply(self, kind: str, obj: V, subs: list[ObjectSubscription[V]]) -> None:
        noun = self.resource.noun
        for sub in list(subs):
            if kind == "DELETED":
                if obj.uid == sub.uid:
                    sub._observe(obj, authoritative=True)
                    sub.set_gone(f"{noun} {sub.namespace}/{sub.name} was deleted")
            else:
                sub._observe(obj, authoritative=False)


def _status_error(status: JSON, what: str) -> KubeError:
    code = int(status.get("code") or 0)
    return error_for_status(code or 500, json.dumps(status), None, what=what)
