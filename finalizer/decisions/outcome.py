"""Pure rules on a job's ``Outcome``: does it need the XCom, does it count as a success, and how a
later finding (a lost pod, an unusable XCom) changes it.

The pipeline asks these at each step; keeping them here gives each rule a table-driven test and
keeps ``pipeline.py`` the step sequence and nothing else.
"""

from __future__ import annotations

from finalizer.jobs import JobSpec, Outcome, OutcomeKind

#: Outcomes of a base container that ran and ended: upstream still reads and pushes their XCom.
_RAN_AND_ENDED = (OutcomeKind.FAILED, OutcomeKind.FAIL_FAST, OutcomeKind.SKIPPED)


def succeeds(outcome: Outcome) -> bool:
    """Success, or a success that the worker finishes (``fallback_to_worker``)."""
    return outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.FALLBACK)


def needs_xcom(spec: JobSpec, outcome: Outcome) -> bool:
    """Read and push the sidecar XCom: on success, and — as upstream 10.25.0 does in
    ``trigger_reentry`` and ``cleanup`` — also when the base container ran and failed (with or
    without a fail-fast rule) or exited with a ``skip_on_exit_code``. A pod that never ran its
    container has nothing to read."""
    if not spec.settings.do_xcom_push:
        return False
    if succeeds(outcome):
        return True
    return outcome.kind in _RAN_AND_ENDED and outcome.exit_code is not None


def lost_outcome(spec: JobSpec, why: str) -> Outcome:
    """The pod vanished before its XCom was read: an explicit failure, never a silent success."""
    what = "its XCom was lost" if spec.settings.do_xcom_push else "its result is unknown"
    return Outcome(
        kind=OutcomeKind.FAILED,
        reason=f"Pod {spec.pod.namespace}/{spec.pod.name} {why} before its XCom was read: {what}",
        event_status="error",
    )


def with_note(outcome: Outcome, note: str) -> Outcome:
    """The same outcome with ``note`` appended to its reason."""
    reason = f"{outcome.reason}; {note}" if outcome.reason else note
    return outcome.model_copy(update={"reason": reason})


def failed(outcome: Outcome, why: str) -> Outcome:
    """Turn a success into a failure with ``why``; an existing failure keeps its kind, noting why."""
    if succeeds(outcome):
        return outcome.model_copy(
            update={"kind": OutcomeKind.FAILED, "reason": why, "event_status": "failed"}
        )
    return with_note(outcome, why)


def gone(spec: JobSpec, why: str, outcome: Outcome | None, recorded: Outcome | None) -> Outcome:
    """The pod is gone: a marker from whoever finished it (``recorded``) says how it ended; else
    the XCom is lost — a failure, or for a task already failing (``outcome``) a note on that failure."""
    if recorded is not None:
        return recorded
    if outcome is not None and not succeeds(outcome):
        return with_note(outcome, f"the pod {why} before its XCom was read: its XCom was lost")
    return lost_outcome(spec, why)
