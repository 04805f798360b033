"""Table-driven tests for finalizer.decisions.batch (a batch/v1 Job's members, order, outcome, pushes)."""

from __future__ import annotations

from typing import Any

import pytest

from finalizer.batch_job import BatchJobView
from finalizer.decisions import batch
from finalizer.decisions.batch import MemberRead
from finalizer.jobs import (
    BatchJobRef,
    ClusterRef,
    FinishSettings,
    OutcomeKind,
    PropagationPolicy,
    TaskInstanceRef,
    batch_job_spec,
)
from finalizer.pod import PodView

BASE = "base"
TI = TaskInstanceRef(id="ti", dag_id="d", task_id="t", run_id="r")
REF = BatchJobRef(namespace="ns", name="job", uid="job-uid")


def spec(do_xcom_push: bool = True) -> Any:
    return batch_job_spec(TI, ClusterRef(), REF, FinishSettings(do_xcom_push=do_xcom_push))


def pod(
    name: str,
    *,
    base: str | None = "running",
    code: int | None = None,
    phase: str = "Running",
    index: int | None = None,
    sidecar: bool = True,
) -> PodView:
    statuses: list[dict[str, Any]] = []
    if base == "terminated":
        statuses.append({"name": BASE, "state": {"terminated": {"exitCode": code}}})
    elif base == "running":
        statuses.append({"name": BASE, "state": {"running": {}}})
    containers = [{"name": BASE}] + ([{"name": "airflow-xcom-sidecar"}] if sidecar else [])
    annotations = {batch.INDEX_ANNOTATION: str(index)} if index is not None else {}
    return PodView(
        {
            "metadata": {"name": name, "uid": f"uid-{name}", "namespace": "ns", "annotations": annotations},
            "spec": {"containers": containers},
            "status": {"phase": phase, "containerStatuses": statuses},
        }
    )


def job(
    condition: str | None = None, reason: str | None = None, indexed: bool = False, succeeded: int = 0
) -> BatchJobView:
    status: dict[str, Any] = {"succeeded": succeeded}
    if condition is not None:
        status["conditions"] = [{"type": condition, "status": "True", "reason": reason}]
    spec_ = {"completionMode": "Indexed"} if indexed else {}
    return BatchJobView({"metadata": {"name": "job", "uid": "job-uid"}, "spec": spec_, "status": status})


def read(
    name: str, code: int | None = 0, value: Any = None, index: int | None = None, problem: str | None = None
) -> MemberRead:
    return MemberRead(uid=f"uid-{name}", name=name, index=index, exit_code=code, value=value, problem=problem)


# -- which members to read --------------------------------------------------------------------------

# (pod, already read, expected to read)
READ_CASES: list[tuple[PodView, bool, bool]] = [
    (pod("a", base="running"), False, False),  # still running
    (pod("a", base=None, phase="Pending"), False, False),  # not started
    (pod("a", base="terminated", code=0), False, True),  # succeeded, sidecar up
    (pod("a", base="terminated", code=1), False, True),  # failed: its sidecar holds the Job open
    (pod("a", base="terminated", code=0), True, False),  # read before (a resume)
    (pod("a", base=None, phase="Failed"), False, True),  # no statuses, terminal phase
    (pod("a", base=None, phase="Succeeded"), False, True),
]


@pytest.mark.parametrize(("member", "done", "expected"), READ_CASES)
def test_to_read(member: PodView, done: bool, expected: bool) -> None:
    got = batch.to_read({member.uid: member}, [member.uid] if done else [], BASE)
    assert got == ([member] if expected else [])


def test_to_read_is_in_name_order() -> None:
    members = {p.uid: p for p in (pod(n, base="terminated", code=0) for n in ("c", "a", "b"))}
    assert [p.name for p in batch.to_read(members, [], BASE)] == ["a", "b", "c"]


# (gone pod, read before, lost?)
LOST_CASES: list[tuple[PodView, bool, bool]] = [
    (pod("a", base="terminated", code=0, phase="Succeeded"), False, True),  # counted, deleted unread
    (pod("a", base="terminated", code=0, phase="Succeeded"), True, False),  # read before it went
    # base exited 0 but its sidecar still ran: not counted, the controller replaces it
    (pod("a", base="terminated", code=0), False, False),
    (pod("a", base="terminated", code=2, phase="Failed"), False, False),  # a failed try
    (pod("a", base="running"), False, False),  # deleted while running: replaced
    (pod("a", base=None, phase="Succeeded"), False, True),
]


@pytest.mark.parametrize(("member", "done", "expected"), LOST_CASES)
def test_lost(member: PodView, done: bool, expected: bool) -> None:
    assert batch.lost({member.uid: member}, [member.uid] if done else []) == (["a"] if expected else [])


# (gone pod's last phase, or None: still there; replaced?)
REPLACED_CASES: list[tuple[str | None, bool]] = [
    (None, False),
    ("Succeeded", False),  # counted, then deleted (our own cleanup, a TTL): its value stands
    ("Running", True),  # deleted while its sidecar ran: the controller made another pod
    ("Failed", True),
]


@pytest.mark.parametrize(("phase", "expected"), REPLACED_CASES)
def test_replaced(phase: str | None, expected: bool) -> None:
    member = read("a", value=1)
    gone = {member.uid: pod("a", base="terminated", code=0, phase=phase)} if phase else {}
    got = batch.replaced({member.uid: member}, gone)[member.uid]
    assert got.replaced is expected
    assert got.succeeded is not expected
    assert batch.return_value([got], indexed=False, unwrap_single=False) == ([] if expected else [1])


def test_without_sidecar() -> None:
    assert batch.without_sidecar({"1": pod("a"), "2": pod("b")}) is None
    members = {"1": pod("b", sidecar=False), "2": pod("a"), "3": pod("c", sidecar=False)}
    missing = batch.without_sidecar(members)
    assert missing is not None
    assert missing.name == "b"


@pytest.mark.parametrize(
    ("member", "expected"),
    [(pod("a", index=3), 3), (pod("a"), None)],
)
def test_completion_index(member: PodView, expected: int | None) -> None:
    assert batch.completion_index(member) == expected


# -- order and pushes --------------------------------------------------------------------------------

READS = [read("p-b", value="B", index=0), read("p-a", value="A", index=2), read("p-c", value="C", index=1)]

# (reads, indexed, unwrap_single, return_value)
VALUE_CASES: list[tuple[list[MemberRead], bool, bool, Any]] = [
    (READS, False, True, ["A", "B", "C"]),  # NonIndexed: by name (upstream's LIST order)
    (READS, True, True, ["B", "C", "A"]),  # Indexed: by completion index
    ([read("p", value={"k": 1})], False, True, {"k": 1}),  # one member, unwrapped
    ([read("p", value={"k": 1})], False, False, [{"k": 1}]),
    ([read("p", value=None)], False, True, None),  # an empty XCom: None, nothing pushed
    ([read("p", value=None)], False, False, [None]),
    # a failed try, then its retry: only the succeeded member's value is pushed
    ([read("p-1", code=1, value="bad"), read("p-2", value="good")], False, True, "good"),
    ([read("p-1", code=1, value="x", index=0), read("p-2", value="y", index=0)], True, False, ["y"]),
    ([], False, True, []),
]


@pytest.mark.parametrize(("reads", "indexed", "unwrap", "expected"), VALUE_CASES)
def test_return_value(reads: list[MemberRead], indexed: bool, unwrap: bool, expected: Any) -> None:
    assert batch.return_value(reads, indexed=indexed, unwrap_single=unwrap) == expected


def test_member_read_round_trips_through_json() -> None:
    member = read("p", code=1, value={"a": [1]}, index=4, problem="was read and rejected: too large")
    assert MemberRead.from_json(member.uid, member.to_json()) == member
    gone = batch.replaced({member.uid: member}, {member.uid: pod("p", phase="Running")})[member.uid]
    assert MemberRead.from_json(gone.uid, gone.to_json()) == gone


# -- outcome -----------------------------------------------------------------------------------------

OK = [read("p-a", value=1), read("p-b", value=2)]

# (job, reads, lost, missing sidecar, do_xcom_push, kind, event status, reason fragment)
OUTCOME_CASES: list[
    tuple[BatchJobView | None, list[MemberRead], list[str], str | None, bool, OutcomeKind, str, str]
] = [
    (job("Complete"), OK, [], None, True, OutcomeKind.SUCCESS, "success", "Job ns/job completed"),
    (
        job("Failed", "BackoffLimitExceeded"),
        OK,
        [],
        None,
        True,
        OutcomeKind.FAILED,
        "error",
        "Job failed with error: BackoffLimitExceeded",
    ),
    (
        job("Failed", "DeadlineExceeded"),
        [],
        [],
        None,
        False,
        OutcomeKind.FAILED,
        "error",
        "Job failed with error: DeadlineExceeded",
    ),
    (None, OK, [], None, True, OutcomeKind.FAILED, "error", "Job ns/job was deleted before it finished"),
    (
        job("Complete"),
        OK,
        ["p-c"],
        None,
        True,
        OutcomeKind.FAILED,
        "error",
        "pod p-c succeeded and was deleted before its XCom was read",
    ),
    # the Job counted 3 succeeded pods, 2 were read: one went before any watch saw it
    (
        job("Complete", succeeded=3),
        OK,
        [],
        None,
        True,
        OutcomeKind.FAILED,
        "error",
        "1 of its 3 succeeded pods were deleted before their XCom was read",
    ),
    (job("Complete", succeeded=2), OK, [], None, True, OutcomeKind.SUCCESS, "success", "completed"),
    (job("Complete"), OK, ["p-c"], None, False, OutcomeKind.SUCCESS, "success", "completed"),  # no XCom
    (
        job("Complete"),
        [read("p-a", problem="the XCom was read and rejected: not JSON")],
        [],
        None,
        True,
        OutcomeKind.FAILED,
        "error",
        "completed, but pod p-a: the XCom was read and rejected: not JSON",
    ),
    # a failed try's unreadable XCom is no reason to fail a Job that completed
    (
        job("Complete"),
        [read("p-a", code=1, problem="could not be read"), read("p-b", value=1)],
        [],
        None,
        True,
        OutcomeKind.SUCCESS,
        "success",
        "completed",
    ),
    (job(), [], [], "p-x", True, OutcomeKind.FAILED, "error", "pod p-x has no airflow-xcom-sidecar"),
    (job(), OK, [], None, True, OutcomeKind.FAILED, "timeout", "did not finish"),
]


@pytest.mark.parametrize(
    ("view", "reads", "lost", "missing", "push", "kind", "status", "reason"), OUTCOME_CASES
)
def test_outcome(
    view: BatchJobView | None,
    reads: list[MemberRead],
    lost: list[str],
    missing: str | None,
    push: bool,
    kind: OutcomeKind,
    status: str,
    reason: str,
) -> None:
    got = batch.outcome(spec(push), view, reads, lost_members=lost, missing_sidecar=missing)
    assert (got.kind, got.event_status) == (kind, status)
    assert reason in got.reason


def test_outcome_past_deadline_says_so() -> None:
    got = batch.outcome(spec(), job(), OK, past_deadline=True)
    assert "execution deadline" in got.reason


# -- cleanup -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delete_job", "terminal", "expected"),
    [(False, True, None), (True, True, "Orphan"), (False, False, "Orphan"), (True, False, "Orphan")],
)
def test_job_delete(delete_job: bool, terminal: bool, expected: PropagationPolicy | None) -> None:
    ref = REF.model_copy(update={"delete_job": delete_job, "propagation_policy": "Orphan"})
    assert batch.job_delete(ref, terminal=terminal) == expected


@pytest.mark.parametrize(
    ("member", "member_read", "code"),
    [
        (pod("a", base="terminated", code=3), None, 3),
        (pod("a", base="running"), None, None),
        (pod("a", base="running"), read("a", code=0), 0),  # the ledger's record wins
    ],
)
def test_member_outcome(member: PodView, member_read: MemberRead | None, code: int | None) -> None:
    job_outcome = batch.outcome(spec(), job("Complete"), [])
    got = batch.member_outcome(job_outcome, member_read, member, BASE)
    assert (got.kind, got.exit_code) == (OutcomeKind.SUCCESS, code)


def _waiting(name: str, reason: str, message: str = "") -> PodView:
    status = {"name": BASE, "state": {"waiting": {"reason": reason, "message": message}}}
    return PodView(
        {"metadata": {"name": name}, "status": {"phase": "Pending", "containerStatuses": [status]}}
    )


# (members' waiting reason and message, extra fatal reasons, expected fragment or None)
START_CASES: list[tuple[str, str, tuple[str, ...], str | None]] = [
    ("ContainerCreating", "", (), None),
    ("InvalidImageName", "bad ref", (), "pod p: Image cannot be pulled, unable to start: InvalidImageName"),
    ("ErrImagePull", "not found", (), "unable to start: ErrImagePull"),
    ("ErrImagePull", "rate limit exceeded", (), None),  # transient: the kubelet retries
    (
        "CreateContainerConfigError",
        "no secret",
        ("CreateContainerConfigError",),
        "CreateContainerConfigError",
    ),
]


@pytest.mark.parametrize(("reason", "message", "extra", "expected"), START_CASES)
def test_start_failure(reason: str, message: str, extra: tuple[str, ...], expected: str | None) -> None:
    got = batch.start_failure({"u": _waiting("p", reason, message)}, extra)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert expected in got
        outcome = batch.outcome(spec(), job(), [], start_failed=got)
        assert outcome.kind is OutcomeKind.FAILED
        assert outcome.reason.startswith(f"Job ns/job: {got}")
