"""Pure rules of a batch/v1 Job's finalization: which member pods to read, in which order, how the
Job ended, what is pushed and what is deleted (issue 16; docs/job-seam.md, "Decisions").

- **Members** are the Job's pods by its ``controller-uid`` label, not the names the worker saw:
  every pod whose base container ended is read and its sidecar stopped, successful or not (a
  failed pod's running sidecar would keep the controller from counting it, so no retry came).
- **Order**: Indexed Jobs by completion index; NonIndexed by pod name (upstream's LIST order).
- **Outcome**: the Job's conditions as upstream's ``is_job_complete``/``is_job_failed`` read them.
  ``Complete`` is a success unless a succeeded member's XCom was lost or rejected (then FAILED,
  naming the pod: never a list with a hole); ``Failed`` is upstream's "Job failed with error: …".
- **Succeeded** means counted by the Job: base exit 0 and not deleted before its phase was
  Succeeded (a pod deleted while its sidecar ran is replaced by the controller). A counted pod
  gone unread, or fewer succeeded reads than ``status.succeeded``, fails the task.
- **Pushes**: ``return_value`` is the list of the *succeeded* members' values in order (a failed
  member's XCom is kept for diagnostics only), unwrapped when single and ``unwrap_single``.
- **Fail at once** (the Job is then deleted, as it is not terminal): a member without the XCom
  sidecar while ``do_xcom_push``; a member whose image can never be pulled (KPO's rules).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from finalizer.batch_job import BatchJobView
from finalizer.decisions.startup import pull_error
from finalizer.jobs import BatchJobRef, JobSpec, Outcome, OutcomeKind, PropagationPolicy
from finalizer.pod import XCOM_SIDECAR_NAME, PodView

#: The annotation (and label) the Job controller sets on an Indexed Job's pods.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
#: The XCom key of the Job as upstream's ``execute_complete`` pushes it.
JOB_KEY = "job"


@dataclass(frozen=True, slots=True)
class MemberRead:
    """What the finalizer got from one member pod's sidecar (persisted in the ledger by uid)."""

    uid: str
    name: str
    index: int | None
    #: The base container's exit code (0: the member succeeded).
    exit_code: int | None
    value: Any = None
    #: Why the XCom could not be used (rejected, unreadable), None when read.
    problem: str | None = None
    #: The pod went before the Job counted it (deleted while its sidecar ran): the controller
    #: replaced it, so its value is not one of the Job's completions.
    replaced: bool = False

    @property
    def succeeded(self) -> bool:
        """Its base container exited 0 and the Job counted it."""
        return self.exit_code == 0 and not self.replaced

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "exit_code": self.exit_code,
            "value": self.value,
            "problem": self.problem,
            "replaced": self.replaced,
        }

    @classmethod
    def from_json(cls, uid: str, data: Mapping[str, Any]) -> MemberRead:
        index, code = data.get("index"), data.get("exit_code")
        return cls(
            uid=uid,
            name=str(data.get("name", "")),
            index=int(index) if index is not None else None,
            exit_code=int(code) if code is not None else None,
            value=data.get("value"),
            problem=data.get("problem"),
            replaced=bool(data.get("replaced", False)),
        )


def completion_index(pod: PodView) -> int | None:
    """The pod's completion index (Indexed Jobs), None without one."""
    raw = (pod.metadata.get("annotations") or {}).get(INDEX_ANNOTATION) or pod.labels.get(INDEX_ANNOTATION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def base_exit(pod: PodView, base: str) -> int | None:
    """The base container's exit code once it terminated (a pod without statuses: by its phase)."""
    container = pod.container(base)
    if container is not None and container.state == "terminated":
        return container.exit_code
    if pod.phase == "Succeeded":
        return 0
    return None


def ended(pod: PodView, base: str) -> bool:
    """The base container terminated, or the pod reached a terminal phase."""
    container = pod.container(base)
    if container is not None and container.state == "terminated":
        return True
    return pod.phase in ("Succeeded", "Failed")


def has_sidecar(pod: PodView) -> bool:
    """The pod's spec declares the XCom sidecar container."""
    containers = (pod.raw.get("spec") or {}).get("containers") or []
    return any(isinstance(c, dict) and c.get("name") == XCOM_SIDECAR_NAME for c in containers)


def to_read(members: Mapping[str, PodView], done: Iterable[str], base: str) -> list[PodView]:
    """Members whose base container ended and that were not read yet, in name order."""
    skip = set(done)
    return sorted(
        (pod for uid, pod in members.items() if uid not in skip and ended(pod, base)),
        key=lambda pod: pod.name,
    )


def without_sidecar(members: Mapping[str, PodView]) -> PodView | None:
    """The first member (by name) lacking the XCom sidecar: with ``do_xcom_push`` it never ends."""
    missing = sorted((p for p in members.values() if not has_sidecar(p)), key=lambda p: p.name)
    return missing[0] if missing else None


def start_failure(members: Mapping[str, PodView], extra_fatal: Iterable[str]) -> str | None:
    """A member whose image can never be pulled (the KPO rules: ``startup.pull_error``), by name:
    its Job would wait for it until a deadline, if any, so the task fails at once instead."""
    fatal = tuple(extra_fatal)
    for pod in sorted(members.values(), key=lambda p: p.name):
        for container in pod.containers():
            message = pull_error(container, fatal)
            if message is not None:
                return f"pod {pod.name}: {message}"
    return None


def lost(gone: Mapping[str, PodView], done: Iterable[str]) -> list[str]:
    """Names of members the Job counted as succeeded (phase Succeeded) that were deleted before
    their XCom was read. A gone member that failed, or went while its sidecar still ran, was not
    counted: the controller replaces it, nothing is lost with it."""
    skip = set(done)
    return sorted(p.name for uid, p in gone.items() if uid not in skip and p.phase == "Succeeded")


def replaced(reads: Mapping[str, MemberRead], gone: Mapping[str, PodView]) -> dict[str, MemberRead]:
    """The reads, with ``replaced`` set for members deleted before the Job counted them."""
    return {
        uid: dataclasses.replace(r, replaced=True) if uid in gone and gone[uid].phase != "Succeeded" else r
        for uid, r in reads.items()
    }


def ordered(reads: Iterable[MemberRead], *, indexed: bool) -> list[MemberRead]:
    """Indexed: by completion index (then name); NonIndexed: by pod name."""
    if indexed:
        return sorted(reads, key=lambda r: (r.index if r.index is not None else -1, r.name))
    return sorted(reads, key=lambda r: r.name)


def _name(ref: BatchJobRef) -> str:
    return f"Job {ref.namespace}/{ref.name}"


def outcome(
    spec: JobSpec,
    job: BatchJobView | None,
    reads: Iterable[MemberRead],
    *,
    lost_members: Iterable[str] = (),
    missing_sidecar: str | None = None,
    start_failed: str | None = None,
    past_deadline: bool = False,
) -> Outcome:
    """How the task ends once the Job is terminal (or can no longer become so here).

    ``job`` None: the Job is gone (the caller first asks the marker / stored return value).
    """
    ref = spec.batch_job
    assert ref is not None, "a batch outcome needs a batch spec"
    name = _name(ref)
    if missing_sidecar is not None:
        return Outcome(
            kind=OutcomeKind.FAILED,
            reason=(
                f"{name}: pod {missing_sidecar} has no {XCOM_SIDECAR_NAME} container, but do_xcom_push "
                "is set: its XCom can never be read (the pod template must keep the sidecar)"
            ),
            event_status="error",
        )
    if start_failed is not None:
        return Outcome(kind=OutcomeKind.FAILED, reason=f"{name}: {start_failed}", event_status="error")
    if job is None:
        return Outcome(
            kind=OutcomeKind.FAILED, reason=f"{name} was deleted before it finished", event_status="error"
        )
    terminal = job.terminal
    if terminal == "failed":
        return Outcome(
            kind=OutcomeKind.FAILED, reason=f"Job failed with error: {job.failure}", event_status="error"
        )
    if terminal is None:
        why = "did not finish before the task's execution deadline" if past_deadline else "did not finish"
        return Outcome(kind=OutcomeKind.FAILED, reason=f"{name} {why}", event_status="timeout")
    if spec.settings.do_xcom_push:
        reads = ordered(reads, indexed=job.indexed)
        names = sorted(set(lost_members))
        counted = sum(1 for r in reads if r.succeeded)
        if names or counted < job.succeeded:
            what = (
                f"pod {', '.join(names)} succeeded and was deleted before its XCom was read"
                if names
                else f"{job.succeeded - counted} of its {job.succeeded} succeeded pods were deleted "
                "before their XCom was read"
            )
            return Outcome(
                kind=OutcomeKind.FAILED,
                reason=f"{name} completed, but {what}: its XCom was lost",
                event_status="error",
            )
        bad = [r for r in reads if r.succeeded and r.problem]
        if bad:
            return Outcome(
                kind=OutcomeKind.FAILED,
                reason=f"{name} completed, but pod {bad[0].name}: {bad[0].problem}",
                event_status="error",
            )
    return Outcome(kind=OutcomeKind.SUCCESS, reason=f"{name} completed")


def return_value(reads: Iterable[MemberRead], *, indexed: bool, unwrap_single: bool) -> Any:
    """The ``return_value`` as upstream's ``execute_complete`` returns it: the succeeded members'
    values in order (an empty XCom is None), the value itself when single and ``unwrap_single``."""
    values = [r.value for r in ordered(reads, indexed=indexed) if r.succeeded]
    return values[0] if unwrap_single and len(values) == 1 else values


def member_outcome(job_outcome: Outcome, read: MemberRead | None, pod: PodView, base: str) -> Outcome:
    """The outcome ``cleanup.decide`` sees for one member: the Job's, with that pod's exit code."""
    code = read.exit_code if read is not None else base_exit(pod, base)
    return job_outcome.model_copy(update={"exit_code": code})


def job_delete(ref: BatchJobRef, *, terminal: bool) -> PropagationPolicy | None:
    """The Job is deleted (with this policy) when the operator asks for it, or when it is not
    terminal at the task's end (a missing sidecar, a deadline), so it does not run on unseen."""
    if ref.delete_job or not terminal:
        return ref.propagation_policy
    return None
