"""The LIST+WATCH loop of one (namespace, label selector), feeding its subscriptions.

We write the loop ourselves because ``kubernetes_asyncio.watch.Watch`` ignores HTTP status,
loses ``Retry-After`` and mishandles 410: LIST (paged) on (re)start, then WATCH from its
resourceVersion with bookmarks; ERROR 410 (or an expired continue token) means re-LIST;
transport errors, 5xx and 429 reconnect from the last resourceVersion after a jittered
backoff that honours ``Retry-After``; a periodic re-LIST is the safety net.

Lines for pods nobody subscribed to are dropped after a regex scan of their ``"name"``
strings (several times cheaper than ``json.loads``, more so on big pods): no parse, no
``PodView``, no ``V1Pod``, nothing kept; their resourceVersion still advances ours.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio.client import CoreV1Api

from api_client.backoff import retry_async
from finalizer.exceptions import FinalizerError, KubeError, KubeTransientError, PodNotFoundError
from finalizer.kube.config import KubeSettings
from finalizer.kube.errors import error_for_status, kube_errors
from finalizer.kube.pods import PodOps
from finalizer.kube.responses import parse_object, raise_for_response, read_body
from finalizer.kube.subscription import Subscription
from finalizer.pod import JSON, PodView

log = logging.getLogger(__name__)

MAX_LIST_BYTES = 512 * 1024 * 1024
#: Every ``"name":"…"`` string of a raw event line (metadata, containers, volumes, env…).
_NAME_FIELD = re.compile(rb'"name"\s*:\s*"([^"\\]*)"')
_RV_FIELD = re.compile(rb'"resourceVersion"\s*:\s*"([^"\\]*)"')


def unwanted_event(line: bytes, wanted: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether a raw watch line is surely about a pod nobody wants, and its resourceVersion.

    Safe by construction: a wanted pod's line holds ``"name":"<its name>"`` verbatim (pod
    names are DNS-1123 names, which JSON never escapes), so when no ``"name"`` string in
    the line is wanted, the event is not for us. BOOKMARK/ERROR lines, lines without a
    name and lines whose resourceVersion is ambiguous are left to the full parse.
    """
    if b'"BOOKMARK"' in line or b'"ERROR"' in line:
        return False, None
    names = _NAME_FIELD.findall(line)
    if not names or any(name.decode("ascii", "replace") in wanted for name in names):
        return False, None
    versions = _RV_FIELD.findall(line)
    if len(versions) != 1:
        return False, None
    return True, versions[0].decode("ascii", "replace")


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
class WatchStream:
    """The LIST+WATCH of one (namespace, selector)."""

    core: CoreV1Api
    pods: PodOps
    settings: KubeSettings
    limiter: asyncio.Semaphore
    namespace: str
    selector: str | None
    subs: dict[str, list[Subscription]] = field(default_factory=dict)
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
        return f"pods in {self.namespace}{sel}"

    # --- membership ----------------------------------------------------------------------------
    def add(self, name: str, uid: str) -> Subscription:
        self.seq += 1
        sub = Subscription(self.namespace, name, uid, self.seq)
        self.subs.setdefault(name, []).append(sub)
        if self.list_seq is not None:
            # A LIST already went out without this pod in mind: ask for it once.
            self._spawn_resolve(sub)
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name=f"kube-watch {self.what}")
        return sub

    def remove(self, sub: Subscription) -> None:
        if sub._resolver is not None:
            sub._resolver.cancel()
        same_name = self.subs.get(sub.name, [])
        if sub in same_name:
            same_name.remove(sub)
        if not same_name:
            self.subs.pop(sub.name, None)

    def _spawn_resolve(self, sub: Subscription) -> None:
        task = asyncio.create_task(self._resolve(sub), name=f"kube-resolve {sub.namespace}/{sub.name}")
        sub._resolver = task
        self.resolvers.add(task)
        task.add_done_callback(self.resolvers.discard)

    async def _resolve(self, sub: Subscription) -> None:
        """GET one late subscriber's pod (the watch only reports changes)."""
        self.stats.resolves += 1

        def transient(exc: BaseException) -> float | None:
            return (exc.retry_after or 0.0) if isinstance(exc, KubeTransientError) else None

        try:
            pod = await retry_async(
                lambda: self.pods.read_pod(sub.namespace, sub.name), self.settings.resolve_retry, transient
            )
        except PodNotFoundError:
            sub.set_gone(f"pod {sub.namespace}/{sub.name} not found")
        except FinalizerError as exc:
            if not sub.known:
                sub._fail(exc)
        else:
            sub._observe(pod, authoritative=True)

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
        while self.subs:
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
                else:
                    log.info("watch of %s interrupted: %s", self.what, exc)
                await asyncio.sleep(policy.delay(attempt, retry_after))

    async def _list(self) -> None:
        """LIST (paged) and bring every subscriber up to date; returns with a fresh resourceVersion."""
        list_seq = self.seq
        self.list_seq = list_seq
        items: dict[str, JSON] = {}
        token: str | None = None
        resource_version = ""
        while True:
            kwargs: dict[str, Any] = {}
            if self.selector:
                kwargs["label_selector"] = self.selector
            if self.settings.list_page_size:
                kwargs["limit"] = self.settings.list_page_size
            if token:
                kwargs["_continue"] = token
            page = await self._list_page(**kwargs)
            meta = page.get("metadata") or {}
            resource_version = resource_version or str(meta.get("resourceVersion") or "")
            for item in page.get("items") or []:
                name = (item.get("metadata") or {}).get("name")
                if name in self.subs:
                    items[name] = item
            token = meta.get("continue") or None
            if not token:
                break
        self.stats.lists += 1
        self.resource_version = resource_version or None
        self.next_resync = time.monotonic() + self.settings.resync_seconds * (0.9 + 0.2 * random.random())
        for name, subs in list(self.subs.items()):
            item = items.get(name)
            pod = PodView(item) if item is not None else None
            for sub in list(subs):
                judged = sub.seq <= list_seq
                if pod is not None:
                    sub._observe(pod, authoritative=judged)
                elif judged:
                    sub.set_gone(f"pod {sub.namespace}/{sub.name} is not in the LIST of {self.what}")

    async def _list_page(self, **kwargs: Any) -> JSON:
        what = f"list {self.what}"
        async with self.limiter:
            with kube_errors(what):
                response: aiohttp.ClientResponse = await self.core.list_namespaced_pod(
                    self.namespace,
                    _preload_content=False,
                    _request_timeout=self.settings.request_timeout,
                    **kwargs,
                )
                if response.status == 410:  # the continue token expired
                    response.release()
                    raise WatchExpiredError(what)
                await raise_for_response(response, what=what)
                body = await read_body(response, MAX_LIST_BYTES, what=what)
        return parse_object(body, what=what, expected="a PodList")

    async def _watch_once(self) -> None:
        """One WATCH request, until the server ends it (``timeoutSeconds``) or it breaks."""
        what = f"watch {self.what}"
        timeout = int(self.settings.watch_timeout_seconds * (1 + 0.5 * random.random()))
        kwargs: dict[str, Any] = {}
        if self.selector:
            kwargs["label_selector"] = self.selector
        if self.resource_version:
            kwargs["resource_version"] = self.resource_version
        with kube_errors(what):
            response: aiohttp.ClientResponse = await self.core.list_namespaced_pod(
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
                await raise_for_response(response, what=what)
                async for line in response.content:
                    self._on_line(line)
                    if not self.subs:
                        return
            except ValueError as exc:  # a line over aiohttp's read buffer: we lost an event
                raise WatchExpiredError(f"{what}: {exc}") from exc
            finally:
                response.release()

    def _on_line(self, line: bytes) -> None:
        """Apply one watch event. Pods nobody subscribed to cost a regex scan, not a parse."""
        if not line.strip():
            return
        skip, resource_version = unwanted_event(line, self.subs)
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
        if not subs:
            self.stats.events_dropped += 1
            return
        pod = PodView(obj)
        for sub in list(subs):
            if kind == "DELETED":
                if pod.uid == sub.uid:
                    sub._observe(pod, authoritative=True)
                    sub.set_gone(f"pod {sub.namespace}/{sub.name} was deleted")
            else:
                sub._observe(pod, authoritative=False)


def _status_error(status: JSON, what: str) -> KubeError:
    code = int(status.get("code") or 0)
    return error_for_status(code or 500, json.dumps(status), None, what=what)
