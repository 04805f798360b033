"""A small job controller and the garbage collector's part for Jobs, on the server's event loop.

It observes the pod and Job stores (every change schedules one coalesced sync of the owning Job on
the next loop turn), counts terminal pods once (a pod that vanished before it ended counts as
failed), and applies ``job_status.decide``: pods created from the template with ``ownerReferences``
and the ``job-tracking`` finalizer (removed once counted), remaining pods deleted, status counters
and conditions written. The fake kubelet runs those pods as any other (``fake-kube/…`` annotations
of the template apply to each pod), and runs them only when the auto-kubelet is on; otherwise a test
drives each pod. Not simulated: ``restartPolicy: OnFailure`` container restarts (a failed container
fails its pod), ``podFailurePolicy``, ``backoffLimitPerIndex``, success policies, deleting pods
beyond a lowered ``parallelism`` (new pods respect it), Job events.

``ttlSecondsAfterFinished``: that many seconds after the Job's Complete or Failed condition, it is
deleted with ``Foreground`` propagation, as the TTL-after-finished controller does (0: at once, on
the next loop turn, so a watcher may see it finished and gone in one breath).

Deletion follows the API's ``propagationPolicy``: ``Background`` removes the Job at once and then
deletes its pods; ``Foreground`` keeps it (``deletionTimestamp``, ``foregroundDeletion`` finalizer)
until its pods are gone; ``Orphan`` (the batch/v1 default) strips the pods' ``ownerReferences``,
then removes the Job.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from finalizer.testing.fake_kube import job_spec, lifecycle
from finalizer.testing.fake_kube.cluster import Cluster
from finalizer.testing.fake_kube.job_status import JobView, Plan, PodView, Tally, compress_indexes, decide
from finalizer.testing.fake_kube.jobs import JobStore
from finalizer.testing.fake_kube.selectors import Selector
from finalizer.testing.fake_kube.wire import JSON, timestamp

POLICIES = ("Foreground", "Background", "Orphan")
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass(slots=True)
class _Track:
    namespace: str
    name: str
    #: pod uid -> (phase it ended in, completion index): counted once, kept after the pod is gone.
    counted: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    #: pod uid -> completion index, for every pod seen not yet terminal.
    seen: dict[str, int | None] = field(default_factory=dict)
    last_failure: float | None = None
    wake_at: float | None = None
    #: pod uids deleted by a suspension: never counted.
    uncounted: set[str] = field(default_factory=set)
    #: Its ``ttlSecondsAfterFinished`` deletion is scheduled.
    expiring: bool = False


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


def _index(pod: JSON) -> int | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(job_spec.COMPLETION_INDEX)
    return int(value) if value is not None else None


def _ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


class JobController:
    def __init__(
        self,
        cluster: Cluster,
        jobs: JobStore,
        on_pod_created: Callable[[str, str], None],
        *,
        backoff_seconds: float = 0.0,
    ) -> None:
        self.cluster = cluster
        self.jobs = jobs
        self.on_pod_created = on_pod_created
        #: Base of the replacement back-off (a real controller uses 10 s, doubling, capped at 6 min).
        self.backoff_seconds = backoff_seconds
        self._tracks: dict[str, _Track] = {}
        self._pending: set[str] = set()
        cluster.store.observers.append(self._on_pod)
        jobs.observers.append(self._on_job)

    # --- observation ---------------------------------------------------------------------------
    def _on_job(self, type_: str, job: JSON, old: JSON | None) -> None:
        meta = job["metadata"]
        uid = meta["uid"]
        if type_ == "DELETED":
            self._tracks.pop(uid, None)
            return
        if type_ == "ADDED":
            self._tracks[uid] = _Track(meta["namespace"], meta["name"])
        self._schedule(uid)

    def _on_pod(self, type_: str, pod: JSON, old: JSON | None) -> None:
        for ref in pod["metadata"].get("ownerReferences") or ():
            if ref.get("kind") == "Job" and ref.get("uid") in self._tracks:
                self._schedule(ref["uid"])

    def _schedule(self, uid: str, delay: float = 0.0) -> None:
        if delay <= 0 and uid in self._pending:
            return
        if delay <= 0:
            self._pending.add(uid)

        def run() -> None:
            if delay <= 0:
                self._pending.discard(uid)
            self._sync(uid)

        self.cluster.later(delay, run)

    # --- one sync --------------------------------------------------------------------------------
    def _owned(self, namespace: str, uid: str) -> list[JSON]:
        return [
            p
            for p in self.cluster.store.list(namespace, Selector(), Selector())
            if any(ref.get("uid") == uid for ref in p["metadata"].get("ownerReferences") or ())
        ]

    def _sync(self, uid: str) -> None:
        track = self._tracks.get(uid)
        if track is None:
            return
        job = self.jobs.get(track.namespace, track.name)
        if job is None or job["metadata"]["uid"] != uid:
            self._tracks.pop(uid, None)
            return
        pods = self._owned(track.namespace, uid)
        if self._collect_if_deleting(job, pods):
            return
        now = time.time()
        self._count(track, pods, now)
        plan = decide(
            self._view(job), [self._pod_view(p) for p in pods], self._tally(track), now, self.backoff_seconds
        )
        self._apply(job, track, plan, now)

    def _count(self, track: _Track, pods: list[JSON], now: float) -> None:
        present = set()
        for pod in pods:
            pod_uid = pod["metadata"]["uid"]
            present.add(pod_uid)
            phase = pod["status"].get("phase")
            if phase in ("Succeeded", "Failed"):
                if pod_uid not in track.counted and pod_uid not in track.uncounted:
                    track.counted[pod_uid] = (phase, _index(pod))
                    if phase == "Failed":
                        track.last_failure = now
                if job_spec.TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ()):
                    self.cluster.store.update(track.namespace, pod["metadata"]["name"], _drop_tracking)
            else:
                track.seen[pod_uid] = _index(pod)
        for gone, index in list(track.seen.items()):
            if gone not in present and gone not in track.counted and gone not in track.uncounted:
                track.counted[gone] = ("Failed", index)
                track.last_failure = now
        for done in (*track.counted, *track.uncounted):
            track.seen.pop(done, None)

    @staticmethod
    def _tally(track: _Track) -> Tally:
        phases = list(track.counted.values())
        return Tally(
            succeeded=sum(1 for phase, _ in phases if phase == "Succeeded"),
            failed=sum(1 for phase, _ in phases if phase == "Failed"),
            succeeded_indexes=frozenset(i for phase, i in phases if phase == "Succeeded" and i is not None),
            last_failure=track.last_failure,
        )

    @staticmethod
    def _view(job: JSON) -> JobView:
        spec, status = job["spec"], job.get("status") or {}
        return JobView(
            parallelism=int(spec.get("parallelism") or 0),
            completions=spec.get("completions"),
            backoff_limit=int(spec.get("backoffLimit") or 0),
            deadline_seconds=spec.get("activeDeadlineSeconds"),
            indexed=spec.get("completionMode") == "Indexed",
            suspended=bool(spec.get("suspend")),
            deleting="deletionTimestamp" in job["metadata"],
            start=_epoch(status.get("startTime")),
            conditions={
                str(c["type"]): str(c.get("reason") or "")
                for c in status.get("conditions") or []
                if c.get("status") == "True"
            },
        )

    @staticmethod
    def _pod_view(pod: JSON) -> PodView:
        return PodView(
            name=pod["metadata"]["name"],
            phase=str(pod["status"].get("phase") or "Pending"),
            deleting="deletionTimestamp" in pod["metadata"],
            ready=_ready(pod),
            index=_index(pod),
        )

    def _apply(self, job: JSON, track: _Track, plan: Plan, now: float) -> None:
        namespace = track.namespace
        for index in plan.create:
            manifest = job_spec.pod_manifest(job, index)
            prefix = manifest["metadata"]["generateName"]
            name = prefix + lifecycle.random_suffix()
            while self.cluster.store.get(namespace, name) is not None:
                name = prefix + lifecycle.random_suffix()
            manifest["metadata"]["name"] = name
            created = self.cluster.create(namespace, manifest)
            track.seen[created["metadata"]["uid"]] = index
            self.on_pod_created(namespace, name)
        for name in plan.delete:
            victim = self.cluster.store.get(namespace, name)
            if victim is not None and "deletionTimestamp" not in victim["metadata"]:
                if plan.uncounted:
                    track.uncounted.add(victim["metadata"]["uid"])
                self.cluster.api_delete(namespace, name, None)
        tally = self._tally(track)
        indexed = job["spec"].get("completionMode") == "Indexed"

        def write(current: JSON) -> None:
            status = current.setdefault("status", {})
            if plan.set_start:
                status["startTime"] = timestamp()
            for key, value in (
                ("active", plan.active),
                ("succeeded", tally.succeeded),
                ("failed", tally.failed),
            ):
                if value:
                    status[key] = value
                else:
                    status.pop(key, None)
            status["ready"] = plan.ready
            status["terminating"] = plan.terminating
            status["uncountedTerminatedPods"] = {}
            if indexed and tally.succeeded_indexes:
                status["completedIndexes"] = compress_indexes(tally.succeeded_indexes)
            if plan.condition is not None:
                type_, reason, message = plan.condition
                stamp = timestamp()
                entry = {
                    "type": type_,
                    "status": plan.condition_status,
                    "lastProbeTime": stamp,
                    "lastTransitionTime": stamp,
                    "reason": reason,
                    "message": message,
                }
                listed = status.setdefault("conditions", [])
                same = [i for i, c in enumerate(listed) if c.get("type") == type_]
                if same:
                    listed[same[0]] = entry
                else:
                    listed.append(entry)
                if type_ == "Complete":
                    status["completionTime"] = stamp

        written = self.jobs.update(namespace, track.name, write)
        self._expire_when_finished(written, track)
        if plan.wake_at is not None and plan.wake_at != track.wake_at:
            track.wake_at = plan.wake_at
            self._schedule(job["metadata"]["uid"], plan.wake_at - now)

    def _expire_when_finished(self, job: JSON, track: _Track) -> None:
        """Schedule the ``ttlSecondsAfterFinished`` deletion once the Job has finished."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        finished = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in (job.get("status") or {}).get("conditions") or []
        )
        if ttl is None or not finished or track.expiring or "deletionTimestamp" in job["metadata"]:
            return
        track.expiring = True
        namespace, name, uid = track.namespace, track.name, job["metadata"]["uid"]

        def expire() -> None:
            current = self.jobs.get(namespace, name)
            if current is not None and current["metadata"]["uid"] == uid:
                self.api_delete(namespace, name, "Foreground")

        self.cluster.later(float(ttl), expire)

    # --- deletion (API + garbage collector) ------------------------------------------------------
    def api_delete(self, namespace: str, name: str, policy: str) -> tuple[JSON, bool]:
        """Delete a Job with ``policy``; the object as it stands and whether it is gone already."""
        job = self.jobs.get(namespace, name)
        assert job is not None
        if "deletionTimestamp" in job["metadata"]:
            return job, False
        uid = job["metadata"]["uid"]
        if policy == "Background":
            removed = self.jobs.remove(namespace, name)
            assert removed is not None
            self.cluster.later(0.0, lambda: self._delete_dependents(namespace, uid))
            return removed, True
        finalizer = FOREGROUND if policy == "Foreground" else ORPHAN

        def mark(current: JSON) -> None:
            meta = current["metadata"]
            meta["deletionTimestamp"] = timestamp()
            meta["deletionGracePeriodSeconds"] = 0
            meta["finalizers"] = [*(meta.get("finalizers") or []), finalizer]

        marked = self.jobs.update(namespace, name, mark)
        self._tracks.setdefault(uid, _Track(namespace, name))
        self._schedule(uid)
        return marked, False

    def _delete_dependents(self, namespace: str, uid: str) -> None:
        for pod in self._owned(namespace, uid):
            if "deletionTimestamp" not in pod["metadata"]:
                self.cluster.api_delete(namespace, pod["metadata"]["name"], None)

    def _collect_if_deleting(self, job: JSON, pods: list[JSON]) -> bool:
        """Foreground/Orphan deletion in progress: do the collector's step; True if it owns the sync."""
        meta = job["metadata"]
        finalizers = meta.get("finalizers") or []
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        if FOREGROUND in finalizers:
            if pods:
                self._delete_dependents(namespace, uid)
                return True
        elif ORPHAN in finalizers:
            for pod in pods:
                self.cluster.store.update(namespace, pod["metadata"]["name"], lambda p: _orphan(p, uid))
        else:
            return False
        self.jobs.remove(namespace, name)
        return True


def _drop_tracking(pod: JSON) -> None:
    finalizers = [f for f in pod["metadata"].get("finalizers") or [] if f != job_spec.TRACKING_FINALIZER]
    if finalizers:
        pod["metadata"]["finalizers"] = finalizers
    else:
        pod["metadata"].pop("finalizers", None)


def _orphan(pod: JSON, uid: str) -> None:
    refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
    if refs:
        pod["metadata"]["ownerReferences"] = refs
    else:
        pod["metadata"].pop("ownerReferences", None)
    _drop_tracking(pod)
