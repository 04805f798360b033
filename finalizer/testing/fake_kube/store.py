"""Stored objects (pods, Jobs): the resourceVersion counter, bounded event history, watch fan-out.

All state lives on the server's event loop and is touched only from there (the public
``FakeKube`` helpers marshal onto it), so nothing here locks. Each change is serialised to JSON
once and shared by every watcher: with 1,000+ pods and a handful of watches the fan-out cost is a
selector check and a queue put per watcher.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from finalizer.testing.fake_kube import lifecycle
from finalizer.testing.fake_kube.selectors import Selector, pod_fields
from finalizer.testing.fake_kube.wire import JSON, clone

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the event history, shared by every watcher."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    namespace: str
    labels: dict[str, str]
    fields: dict[str, str]
    old_labels: dict[str, str] | None
    old_fields: dict[str, str] | None
    object_json: str  # the pod with kind/apiVersion, serialised once

    def line(self, type_: str | None = None) -> bytes:
        return f'{{"type":"{type_ or self.type}","object":{self.object_json}}}\n'.encode()


@dataclass(slots=True)
class Runtime:
    """What the container runtime holds for a pod: the XCom volume, logs, running exec sessions."""

    files: dict[str, bytes] = field(default_factory=dict)
    logs: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    stopped: dict[str, asyncio.Event] = field(default_factory=dict)
    forgotten: bool = False
    #: The node does not answer the API server's proxy (exec/log fail 500 before any upgrade).
    unreachable: bool = False
    #: Connections of the exec sessions now open into this pod (``drop_exec_sessions`` resets them).
    exec_transports: set[asyncio.Transport] = field(default_factory=set)

    def stop_event(self, container: str) -> asyncio.Event:
        return self.stopped.setdefault(container, asyncio.Event())


class Watcher:
    """One open watch: a namespace (or all), selectors and a queue of encoded lines."""

    __slots__ = ("closed", "fields", "labels", "namespace", "pinned_name", "queue")

    def __init__(self, namespace: str | None, labels: Selector, fields: Selector) -> None:
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        names = {value for key, value in fields.equals if key == "metadata.name"}
        #: The one object name this watch can ever see, if its field selector pins one.
        self.pinned_name = next(iter(names)) if len(names) == 1 else None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    def _matches(self, labels: dict[str, str] | None, fields: dict[str, str] | None) -> bool:
        if labels is None or fields is None:
            return False
        return self.labels.matches(labels) and self.fields.matches(fields)

    def translate(self, change: Change) -> str | None:
        """The event type this watcher sees for a change, or None (selectors move objects in/out)."""
        if self.namespace is not None and change.namespace != self.namespace:
            return None
        new = self._matches(change.labels, change.fields)
        if change.type == "ADDED":
            return "ADDED" if new else None
        if change.type == "DELETED":
            return "DELETED" if new else None
        old = self._matches(change.old_labels, change.old_fields)
        if old and new:
            return "MODIFIED"
        if new:
            return "ADDED"
        if old:
            return "DELETED"
        return None

    def offer(self, change: Change) -> None:
        type_ = self.translate(change)
        if type_ is not None:
            self.queue.put_nowait(change.line(type_))


def with_kind(pod: JSON) -> JSON:
    return {"kind": "Pod", "apiVersion": "v1", **pod}


#: Called with (type, object, previous object) after each change: the job controller's view of pods.
Observer = Callable[[str, JSON, JSON | None], None]


class ObjectStore:
    """Objects of one kind by (namespace, name): resourceVersion counter, history, watch fan-out.

    Subclasses name the kind and how its selectable fields are read; pods add their runtime.
    """

    kind = ""
    api_version = "v1"

    def __init__(self, history_limit: int = 10_000) -> None:
        self.objects: dict[Key, JSON] = {}
        self.rv = 1
        self.history: deque[Change] = deque()
        self.history_limit = history_limit
        #: Events with rv <= this are gone: watching from an older rv gets 410 Expired.
        self.compacted_rv = 1
        #: Every open watch. Those pinned to one name (``fieldSelector=metadata.name=x``, one watch per
        #: object as some clients do) are also indexed by it, so a change is offered only to its own.
        self.watchers: set[Watcher] = set()
        self._general: set[Watcher] = set()
        self._by_name: dict[str, set[Watcher]] = {}
        #: The last emitted snapshot of each object and its JSON (with kind), so an API answer that
        #: returns that very object (GET, PATCH, DELETE) reuses the bytes the watch event used.
        self._encoded: dict[Key, tuple[JSON, str]] = {}
        self._last_deleted: tuple[JSON, str] | None = None
        #: In-process observers of every change (controllers), called after the watchers.
        self.observers: list[Observer] = []

    def fields_of(self, obj: JSON) -> dict[str, str]:
        raise NotImplementedError

    def with_kind(self, obj: JSON) -> JSON:
        return {"kind": self.kind, "apiVersion": self.api_version, **obj}

    # --- reads -------------------------------------------------------------------------------
    def get(self, namespace: str, name: str) -> JSON | None:
        return self.objects.get((namespace, name))

    def list(self, namespace: str | None, labels: Selector, fields: Selector) -> list[JSON]:
        out = []
        for (ns, _name), obj in sorted(self.objects.items()):
            if namespace is not None and ns != namespace:
                continue
            if labels.empty and fields.empty:
                out.append(obj)
                continue
            if labels.matches(lifecycle.labels_of(obj)) and fields.matches(self.fields_of(obj)):
                out.append(obj)
        return out

    def encode(self, obj: JSON) -> str:
        """``obj`` with kind/apiVersion as compact JSON; cached when it is an emitted snapshot.

        Stored objects are immutable snapshots (``update`` writes a new object), so identity is enough.
        """
        meta = obj.get("metadata") or {}
        cached = self._encoded.get((meta.get("namespace", ""), meta.get("name", "")))
        if cached is not None and cached[0] is obj:
            return cached[1]
        if self._last_deleted is not None and self._last_deleted[0] is obj:
            return self._last_deleted[1]
        return json.dumps(self.with_kind(obj), separators=(",", ":"))

    # --- writes ------------------------------------------------------------------------------
    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, namespace: str, obj: JSON) -> JSON:
        """Store an admitted object (its resourceVersion from ``next_rv``) and emit ADDED."""
        self.objects[(namespace, obj["metadata"]["name"])] = obj
        self._emit("ADDED", obj, None)
        return obj

    def update(self, namespace: str, name: str, mutate: Callable[[JSON], None]) -> JSON:
        """Apply ``mutate`` to a copy of the object; store and emit MODIFIED if anything changed."""
        key = (namespace, name)
        old = self.objects[key]
        new = clone(old)
        mutate(new)
        if new == old:
            return old
        new["metadata"]["resourceVersion"] = str(self.next_rv())
        self.objects[key] = new
        self._emit("MODIFIED", new, old)
        return new

    def remove(self, namespace: str, name: str) -> JSON | None:
        obj = self.objects.pop((namespace, name), None)
        if obj is None:
            return None
        # Copy-on-write: stored snapshots are never edited in place, so a shallow copy will do.
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.next_rv())}}
        self._emit("DELETED", obj, obj)
        return obj

    def _emit(self, type_: str, obj: JSON, old: JSON | None) -> None:
        change = Change(
            rv=int(obj["metadata"]["resourceVersion"]),
            type=type_,
            namespace=obj["metadata"]["namespace"],
            labels=lifecycle.labels_of(obj),
            fields=self.fields_of(obj),
            old_labels=lifecycle.labels_of(old) if old is not None else None,
            old_fields=self.fields_of(old) if old is not None else None,
            object_json=json.dumps(self.with_kind(obj), separators=(",", ":")),
        )
        key = (change.namespace, change.fields["metadata.name"])
        if type_ == "DELETED":
            self._encoded.pop(key, None)
            self._last_deleted = (obj, change.object_json)
        else:
            self._encoded[key] = (obj, change.object_json)
        self.history.append(change)
        while len(self.history) > self.history_limit:
            self.compacted_rv = self.history.popleft().rv
        for watcher in self._general:
            watcher.offer(change)
        for watcher in self._by_name.get(change.fields["metadata.name"], ()):
            watcher.offer(change)
        for observer in self.observers:
            observer(type_, obj, old)

    def compact(self) -> int:
        """Drop the whole history: any watch resuming from an rv before now gets 410 Expired."""
        self.history.clear()
        self.compacted_rv = self.rv
        return self.rv

    # --- watch support ---------------------------------------------------------------------------
    def since(self, rv: int) -> Iterable[Change]:
        """History newer than ``rv`` (caller checked ``rv >= compacted_rv``)."""
        return (change for change in self.history if change.rv > rv)

    def subscribe(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)
        name = watcher.pinned_name
        if name is None:
            self._general.add(watcher)
        else:
            self._by_name.setdefault(name, set()).add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        self._general.discard(watcher)
        name = watcher.pinned_name
        if name is not None and name in self._by_name:
            self._by_name[name].discard(watcher)
            if not self._by_name[name]:
                del self._by_name[name]

    def close_watchers(self) -> None:
        for watcher in list(self.watchers):
            watcher.closed = True
            watcher.queue.put_nowait(None)
        self.watchers.clear()
        self._general.clear()
        self._by_name.clear()


class PodStore(ObjectStore):
    """Pods, plus what the container runtime holds for each."""

    kind = "Pod"

    def __init__(self, history_limit: int = 10_000) -> None:
        super().__init__(history_limit)
        #: The same dict as ``objects``, under the name the pod helpers use.
        self.pods = self.objects
        self.runtime: dict[Key, Runtime] = {}

    def fields_of(self, obj: JSON) -> dict[str, str]:
        return pod_fields(obj)

    def with_kind(self, obj: JSON) -> JSON:
        return with_kind(obj)

    def runtime_of(self, namespace: str, name: str) -> Runtime:
        return self.runtime.setdefault((namespace, name), Runtime())

    def add(self, namespace: str, manifest: JSON) -> JSON:
        pod = lifecycle.admit(manifest, namespace, self.next_rv())
        self.runtime[(namespace, pod["metadata"]["name"])] = Runtime()
        return self.put(namespace, pod)

    def remove(self, namespace: str, name: str) -> JSON | None:
        removed = super().remove(namespace, name)
        runtime = self.runtime.pop((namespace, name), None)
        if runtime is not None:
            for event in runtime.stopped.values():
                event.set()
        return removed
