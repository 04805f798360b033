"""The per-pod steps both workloads use: a KPO pod's job, and each member pod of a batch/v1 Job.

Read and classify the sidecar's XCom, stop the sidecar, apply ``on_finish_action`` to one pod
(label, delete with the uid precondition), push planned XComs, write the outcome marker, and ask
Airflow's XCom store how an earlier run ended (``recorded``). Each call's I/O goes through
``StepCalls`` (timeouts, retry classification, metrics); payloads are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from finalizer.config import FinalizerConfig
from finalizer.decisions import cleanup, marker, xcom_push
from finalizer.exceptions import (
    FinalizerError,
    KubeRequestError,
    PodConflictError,
    PodNotFoundError,
    XComInvalidJSONError,
    XComReadError,
    XComTooLargeError,
)
from finalizer.jobs import FinishSettings, JobSpec, Outcome, PodRef
from finalizer.pod import XCOM_SIDECAR_NAME, PodView
from finalizer.retry import StepCalls
from finalizer.seams import ClusterOps, SidecarOps, XComSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class XComRead:
    """One sidecar read: ``read`` (``value`` None for an empty file or JSON null), a ``problem``
    (rejected or unreadable, said as "the XCom …"), or ``gone`` (the pod went first)."""

    read: bool = False
    value: Any = None
    problem: str | None = None
    gone: bool = False


class PodSteps:
    """The shared steps, bound to one finalizer's config, I/O policy and XCom sink."""

    def __init__(self, config: FinalizerConfig, io: StepCalls, xcoms: XComSink) -> None:
        self._config = config
        self._io = io
        self._xcoms = xcoms

    async def recorded(self, spec: JobSpec) -> Outcome | None:
        """How an earlier run of this try ended, by Airflow's XCom store: the marker, or a stored
        ``return_value`` (the success path: ``decisions.marker``); None when neither says."""
        value = await self._io(
            "read outcome marker", "push_xcom", lambda: self._xcoms.get(spec, marker.MARKER_KEY)
        )
        recorded = marker.decode_marker(value, spec)
        if recorded is not None:
            log.debug("job %s: outcome %s taken from the marker XCom", spec.key, recorded.kind)
            return recorded
        if spec.settings.do_xcom_push:
            stored = await self._io(
                "read return value", "push_xcom", lambda: self._xcoms.get(spec, xcom_push.RETURN_KEY)
            )
            if stored is not None:
                log.debug("job %s: success shown by its stored return_value XCom", spec.key)
                return marker.from_return_value(spec)
        return None

    async def read_xcom(self, sidecar: SidecarOps, settings: FinishSettings) -> XComRead:
        """Read the sidecar's ``return.json`` within the smaller of the task's and the finalizer's cap."""
        cap = min(settings.xcom_max_bytes, self._config.xcom_max_bytes)
        try:
            present, value = await self._io("read XCom", "read_xcom", lambda: sidecar.read_xcom(cap))
        except PodNotFoundError:
            return XComRead(gone=True)
        except (XComTooLargeError, XComInvalidJSONError) as exc:
            return XComRead(problem=f"the XCom was read and rejected: {exc}")
        except XComReadError as exc:
            return XComRead(problem=f"the XCom could not be read: {exc}")
        # An empty return.json and a JSON null both push nothing (the task returned None).
        return XComRead(read=True, value=value if present else None)

    async def stop_sidecar(self, key: str, sidecar: SidecarOps) -> bool:
        """Let the pod reach a terminal phase; failure is only a warning (as upstream). False then."""
        try:
            await self._io("stop sidecar", "stop_sidecar", sidecar.stop)
        except FinalizerError as exc:
            log.warning("job %s: could not stop %s (%s)", key, XCOM_SIDECAR_NAME, exc)
            return False
        return True

    async def push(self, spec: JobSpec, pushes: Iterable[xcom_push.Push]) -> None:
        """Write each planned XCom (an overwrite: safe to redo after a crash)."""
        for push in pushes:

            async def one(p: xcom_push.Push = push) -> None:
                await self._xcoms.set(spec, p.key, p.value, mapped_length=p.mapped_length)

            await self._io(f"push XCom {push.key!r}", "push_xcom", one)

    async def write_marker(
        self, spec: JobSpec, outcome: Outcome, unless: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write the marker of ``outcome``; not again when ``unless`` (written earlier) says the same."""
        value = marker.encode_marker(spec, outcome)
        if value == unless or not self._config.outcome_marker:
            return value
        await self._io(
            "write outcome marker", "push_xcom", lambda: self._xcoms.set(spec, marker.MARKER_KEY, value)
        )
        return value

    async def current(self, cluster: ClusterOps, ref: PodRef) -> PodView | None:
        """The pod as it is now (one GET, uid checked); None when gone."""
        try:
            return await self._io("read pod", "read_pod", lambda: cluster.read_pod(ref))
        except PodNotFoundError:
            return None

    async def cleanup(
        self,
        key: str,
        cluster: ClusterOps,
        ref: PodRef,
        pod: PodView | None,
        settings: FinishSettings,
        outcome: Outcome,
    ) -> None:
        """``on_finish_action`` on ``pod`` (its current state; None: already gone): delete with
        the uid precondition, or keep + label."""
        if pod is None:
            log.debug("job %s: pod %s already gone", key, ref.name)
            return
        action = cleanup.decide(
            settings.on_finish_action, pod, outcome, grace_period_seconds=settings.termination_grace_period
        )
        try:
            if action.labels:
                try:
                    await self._io("label pod", "cleanup", lambda: cluster.label_checked(ref))
                except KubeRequestError as exc:
                    # 422 on our uid-guarded patch: another pod holds the name now, ours is gone.
                    log.debug("job %s: pod %s not labelled (%s)", key, ref.name, exc)
                    return
            if isinstance(action, cleanup.Delete):
                deleted = await self._io(
                    "delete pod", "cleanup", lambda: cluster.delete_pod(ref, action.grace_period_seconds)
                )
                log.debug("job %s: %s%s", key, action.reason, "" if deleted else " (already gone)")
            else:
                log.debug("job %s: %s", key, action.reason)
        except (PodNotFoundError, PodConflictError):
            # 409: the name now belongs to another pod, so ours is gone.
            log.debug("job %s: pod %s already gone", key, ref.name)
