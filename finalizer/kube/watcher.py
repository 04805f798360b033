"""One shared LIST+WATCH per (namespace, label selector) serving any number of pods.

``KubernetesPodTrigger`` polls every pod on its own; here one watch connection serves every
subscribed pod, identified by name AND uid. Level-based: a LIST on (re)start gives the
whole truth, then a WATCH from its resourceVersion (bookmarks keep it fresh; an ``ERROR``
410 means re-LIST). Subscribers see the latest state, not a queue of events, so a slow
subscriber costs no memory and a missed event cannot hide a finished pod.

Lines for pods nobody subscribed to are dropped after a regex scan of their ``"name"``
strings (7x cheaper than ``json.loads`` on a small pod, more on real ones): no parse, no
``PodView``, no ``V1Pod``, nothing kept; their resourceVersion still advances ours. We write
the loop ourselves because ``kubernetes_asyncio.watch.Watch`` ignores HTTP status, loses
``Retry-After`` and mishandles 410.

Who decides a pod is gone: a LIST sent *after* a subscriber registered (absent, or the
name now has another uid), a DELETED event with its uid, an event for another uid under
the name newer than what we know, or a GET answering 404 / another uid. A subscriber that
joins a running watch gets one GET, since the watch only reports changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio.client import CoreV1Api

from api_client.backoff import retry_async
from finalizer.exceptions import (
    FinalizerError,
    FinalizerUnavailableError,
    KubeError,
    KubeTransientError,
    PodNotFoundError,
)
from finalizer.kube.config import KubeSettings
from finalizer.kube.errors import error_for_status, kube_errors
from finalizer.kube.pods import PodOps
from finalizer.kube.responses import raise_for_response, read_body
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


class WatchExpiredError(Exception):
    """The watch's resourceVersion is older than the server keeps (410): re-LIST."""


class Subscription:
    """One pod on the shared watch: its latest state, and a way to wait for a condition."""

    def __init__(self, namespace: str, name: str, uid: str, seq: int) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.seq = seq
        self._pod: PodView | None = None
        self._known = False
        self._gone: str | None = None
        self._error: FinalizerError | None = None
        self._changed = asyncio.Event()
        self._resolver: asyncio.Task[None] | None = None

    @property
    def latest(self) -> PodView | None:
        """The latest state seen; None while unknown and once the pod is gone."""
        return None if self._gone else self._pod

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
        """Why the watch cannot serve this pod right now (cleared when it recovers)."""
        return self._error

    async def wait(
        self,
        predicate: Callable[[PodView], bool],
        timeout: float | None = None,  # noqa: ASYNC109 - the documented signature
    ) -> PodView | None:
        """The first state for which ``predicate`` holds, or None as soon as the pod is gone.

        Raises ``TimeoutError`` after ``timeout`` seconds, and the watch's terminal error
        (e.g. 403) if the watch cannot serve this pod at all.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._gone is not None:
                    return None
                if self._error is not None:
                    raise self._error
                if self._known and self._pod is not None and predicate(self._pod):
                    return self._pod
                self._changed.clear()
                await self._changed.wait()

    # --- fed by the stream -----------------------------------------------------------------
    def _observe(self, pod: PodView, *, authoritative: bool) -> None:
        """A state of the pod holding our name. ``authoritative``: it is current, not a replay."""
        if self._gone is not None:
            return
        if pod.uid == self.uid:
            if self._pod is None or rv_newer(pod.resource_version, self._pod.resource_version):
                self._pod = pod
                self._known = True
            self._error = None
            self._changed.set()
        elif authoritative or (
            self._pod is not None and rv_newer(pod.resource_version, self._pod.resource_version)
        ):
            self.set_gone(f"the name {self.name} now belongs to pod uid {pod.uid}")

    def set_gone(self, reason: str) -> None:
        if self._gone is None:
            self._gone = reason
            self._changed.set()

    def _fail(self, error: FinalizerError) -> None:
        self._error = error
        self._changed.set()


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
class _Stream:
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
        try:
            page = json.loads(body)
        except ValueError as exc:
            raise KubeTransientError(f"{what}: the API sent a body that is not JSON") from exc
        if not isinstance(page, dict):
            raise KubeTransientError(f"{what}: the API sent {type(page).__name__}, expected a PodList")
        return page

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


class PodWatcher:
    """Every shared watch of one cluster. ``subscribe`` is the whole API."""

    def __init__(
        self, core: CoreV1Api, pods: PodOps, settings: KubeSettings, limiter: asyncio.Semaphore
    ) -> None:
        self._core = core
        self._pods = pods
        self._settings = settings
        self._limiter = limiter
        self._streams: dict[tuple[str, str | None], _Stream] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.asynccontextmanager
    async def subscribe(
        self, namespace: str, name: str, uid: str, label_selector: str | None = None
    ) -> AsyncIterator[Subscription]:
        """Follow pod ``namespace/name`` with ``uid``; the watch stops with its last subscriber."""
        if self._closed:
            raise FinalizerUnavailableError("the pod watcher is closed")
        key = (namespace, label_selector or None)
        stream = self._streams.get(key)
        if stream is None:
            stream = _Stream(
                self._core, self._pods, self._settings, self._limiter, namespace, label_selector or None
            )
            self._streams[key] = stream
        sub = stream.add(name, uid)
        try:
            yield sub
        finally:
            stream.remove(sub)
            if not stream.subs and self._streams.get(key) is stream:
                del self._streams[key]
                for task in stream.stop():
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)

    def stats(self) -> dict[str, StreamStats]:
        """Per-stream counters, keyed ``namespace`` or ``namespace?selector``."""
        return {ns + (f"?{sel}" if sel else ""): s.stats for (ns, sel), s in self._streams.items()}

    @property
    def subscribed(self) -> int:
        return sum(len(subs) for s in self._streams.values() for subs in s.subs.values())

    async def aclose(self) -> None:
        """Stop every watch; waiting subscribers then wait in vain, so close only at shutdown."""
        self._closed = True
        tasks = [t for s in self._streams.values() for t in s.stop()] + list(self._stopping)
        self._streams.clear()
        for sub_task in tasks:
            sub_task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
