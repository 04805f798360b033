"""core/v1 Events for pods, as the scheduler and kubelet record them (LIST and WATCH).

``KubernetesPodOperator`` lists and watches ``involvedObject.name=<pod>`` events while a pod starts
(and its trigger does, in the provider's async hook), so a fake without them breaks the upstream
operator. Events have their own resourceVersion sequence and bounded history; the watch machinery
is the pods' (``Change`` / ``Watcher``), with event fields in place of pod fields.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Iterable

from finalizer.testing.fake_kube.selectors import Selector
from finalizer.testing.fake_kube.store import Change, Watcher
from finalizer.testing.fake_kube.wire import JSON, timestamp

#: Fields the API lets events be selected by (``pkg/registry/core/event/strategy.go``).
EVENT_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


def event_fields(event: JSON) -> dict[str, str]:
    meta = event.get("metadata") or {}
    involved = event.get("involvedObject") or {}
    out = {
        "metadata.name": str(meta.get("name") or ""),
        "metadata.namespace": str(meta.get("namespace") or ""),
        "reason": str(event.get("reason") or ""),
        "reportingComponent": str(event.get("reportingComponent") or ""),
        "source": str((event.get("source") or {}).get("component") or ""),
        "type": str(event.get("type") or ""),
    }
    for key in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
        out[f"involvedObject.{key}"] = str(involved.get(key) or "")
    return out


class EventStore:
    """Events by (namespace, name), with the watch-source interface ``serve_watch`` needs."""

    kind = "Event"

    def __init__(self, history_limit: int = 10_000) -> None:
        self.events: dict[tuple[str, str], JSON] = {}
        self.rv = 1
        self.compacted_rv = 1
        self.history: deque[Change] = deque()
        self.history_limit = history_limit
        self.watchers: set[Watcher] = set()

    def record(
        self,
        pod: JSON,
        reason: str,
        message: str,
        *,
        type_: str = "Normal",
        component: str = "kubelet",
        field_path: str | None = None,
    ) -> JSON:
        meta = pod["metadata"]
        self.rv += 1
        now = timestamp()
        involved: JSON = {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path:
            involved["fieldPath"] = field_path
        source: JSON = {"component": component}
        if component == "kubelet" and pod.get("spec", {}).get("nodeName"):
            source["host"] = pod["spec"]["nodeName"]
        event: JSON = {
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "resourceVersion": str(self.rv),
                "creationTimestamp": now,
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": source.get("host", ""),
        }
        self.events[(meta["namespace"], event["metadata"]["name"])] = event
        fields = event_fields(event)
        change = Change(
            rv=self.rv,
            type="ADDED",
            namespace=meta["namespace"],
            labels={},
            fields=fields,
            old_labels=None,
            old_fields=None,
            object_json=json.dumps({"kind": "Event", "apiVersion": "v1", **event}, separators=(",", ":")),
        )
        self.history.append(change)
        while len(self.history) > self.history_limit:
            self.compacted_rv = self.history.popleft().rv
        for watcher in self.watchers:
            watcher.offer(change)
        return event

    def list(self, namespace: str | None, labels: Selector, fields: Selector) -> list[JSON]:
        out: list[JSON] = []
        for (ns, _), event in sorted(
            self.events.items(), key=lambda kv: int(kv[1]["metadata"]["resourceVersion"])
        ):
            if namespace is not None and ns != namespace:
                continue
            if labels.matches({}) and fields.matches(event_fields(event)):
                out.append(event)
        return out

    def since(self, rv: int) -> Iterable[Change]:
        return (change for change in self.history if change.rv > rv)

    def subscribe(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def close_watchers(self) -> None:
        for watcher in list(self.watchers):
            watcher.closed = True
            watcher.queue.put_nowait(None)
        self.watchers.clear()

    def compact(self) -> int:
        self.history.clear()
        self.compacted_rv = self.rv
        return self.rv
