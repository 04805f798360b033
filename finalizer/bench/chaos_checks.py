"""The per-task judgement of ``bench chaos``: pure functions over what Airflow and the fake cluster show.

A task passes when it reached its expected terminal state through exactly one terminal transition,
its ``return_value`` XCom is present once and equal to what the pod wrote (absent when it wrote
none), its pod was deleted (or kept and labelled ``already_checked=True``), no DELETE reached the
pod before its XCom was stored, and no request of the triggerer's client touched the pod after
the task was handed to a worker; and it was handed to a worker only where that is its expected
path (a short ledger outage, a kill or Kubernetes faults must not send it there). The facts come
from the metadata DB's audit tables (``chaos_audit``) and the fake's request log; nothing is taken
from the code under test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: States that end a try: a transition into one of these is a "terminal transition".
TERMINAL = frozenset({"success", "failed", "skipped", "up_for_retry", "upstream_failed", "removed"})
#: The label the provider (and the finalizer) put on a pod it keeps.
KEPT_LABEL = ("already_checked", "True")
#: Verbs that act on one pod (a namespace LIST or WATCH is nobody's action on a given pod).
POD_VERBS = frozenset({"get", "exec", "log", "delete", "patch", "update"})
#: The kinds of violation, each a ``Verdict`` flag.
VIOLATIONS = (
    "lost",
    "doubled",
    "leaked",
    "wrong_state",
    "early_delete",
    "after_handover",
    "needless_handover",
)


class _Absent:
    """The ``return_value`` the pod did not write (or Airflow does not hold)."""

    def __repr__(self) -> str:
        return "NO_XCOM"


NO_XCOM: Any = _Absent()


@dataclass(frozen=True, slots=True)
class Expect:
    """What a task must show once its scenario is over."""

    state: str
    xcom: Any = NO_XCOM
    keep_pod: bool = False
    #: Handed to a worker: True = must be (its policy asks), False = must not be, None = either.
    worker: bool | None = False


@dataclass(frozen=True, slots=True)
class Transition:
    old: str | None
    new: str | None
    try_number: int
    at: float  # time.time() clock (PostgreSQL clock_timestamp on the same machine)


@dataclass(frozen=True, slots=True)
class PodRequest:
    verb: str
    at: float
    status: int
    worker: bool  # sent by a worker's client (the sync kubernetes library), not the triggerer's


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything observed about one task at the end of its scenario."""

    state: str | None
    transitions: tuple[Transition, ...] = ()
    #: (key, decoded value) of every XCom row present at the end.
    xcoms: tuple[tuple[str, Any], ...] = ()
    #: (key, time) of every XCom row ever inserted for this task (overwrites included).
    xcom_inserts: tuple[tuple[str, float], ...] = ()
    pod_exists: bool = False
    pod_labels: dict[str, str] = field(default_factory=dict)
    requests: tuple[PodRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    lost: bool = False
    doubled: bool = False
    leaked: bool = False
    wrong_state: bool = False
    early_delete: bool = False
    after_handover: bool = False
    needless_handover: bool = False
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons


def terminal_transitions(transitions: tuple[Transition, ...]) -> int:
    """How many times the task entered a terminal state (a repeated write of the same state is none)."""
    return sum(t.new in TERMINAL and t.old != t.new for t in transitions)


def handed_over_at(transitions: tuple[Transition, ...]) -> float | None:
    """When the classic trigger event gave the task to a worker: its first DEFERRED → SCHEDULED."""
    return next((t.at for t in transitions if t.old == "deferred" and t.new == "scheduled"), None)


def strict_equal(a: Any, b: Any) -> bool:
    """JSON equality where ``1``, ``1.0`` and ``True`` differ (as a downstream task would see them)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check(expect: Expect, facts: Facts) -> Verdict:
    """Judge one task (see the module docstring); every failed rule adds a reason."""
    reasons: list[str] = []
    flags = dict.fromkeys(
        ("lost", "doubled", "leaked", "wrong_state", "early_delete", "after_handover"), False
    )

    def fail(flag: str, reason: str) -> None:
        flags[flag] = True
        reasons.append(reason)

    if facts.state != expect.state:
        fail("wrong_state", f"state {facts.state} (expected {expect.state})")
    ends = terminal_transitions(facts.transitions)
    if ends > 1:
        fail("doubled", f"{ends} terminal transitions")
    elif ends == 0:
        fail("wrong_state", "no terminal transition in the state timeline")
    for key, count in Counter(key for key, _ in facts.xcoms).items():
        if count > 1:
            fail("doubled", f"XCom {key!r} stored {count} times")
    stored = [value for key, value in facts.xcoms if key == "return_value"]
    if expect.xcom is NO_XCOM:
        if stored:
            fail("wrong_state", f"a return_value the pod never wrote: {stored[0]!r}")
    elif not stored:
        fail("lost", "the return_value the pod wrote is not in Airflow")
    elif not strict_equal(expect.xcom, stored[0]):
        fail("lost", f"return_value {stored[0]!r} differs from what the pod wrote")
    _check_pod(expect, facts, fail)
    _check_requests(expect, facts, fail)
    return Verdict(**flags, reasons=tuple(reasons))


def summary(expect: Expect, facts: Facts, verdict: Verdict) -> dict[str, Any]:
    """One task's line in the JSON: what was expected, what was seen, and why it failed if it did."""
    return {
        "expected_state": expect.state,
        "state": facts.state,
        "timeline": " > ".join(str(t.new) for t in facts.transitions),
        "xcom_keys": sorted(key for key, _ in facts.xcoms),
        "xcom_inserts": len(facts.xcom_inserts),
        "pod_exists": facts.pod_exists,
        "requests": dict(Counter(("worker " if r.worker else "") + r.verb for r in facts.requests)),
        "handed_over": handed_over_at(facts.transitions) is not None,
        "reasons": list(verdict.reasons),
    }


def _check_pod(expect: Expect, facts: Facts, fail: Any) -> None:
    if not expect.keep_pod:
        if facts.pod_exists:
            fail("leaked", "the pod was not deleted")
        return
    if not facts.pod_exists:
        fail("wrong_state", "the pod was deleted although on_finish_action keeps it")
    elif facts.pod_labels.get(KEPT_LABEL[0]) != KEPT_LABEL[1]:
        fail("leaked", f"the kept pod lacks the label {KEPT_LABEL[0]}={KEPT_LABEL[1]}")


def _check_requests(expect: Expect, facts: Facts, fail: Any) -> None:
    # The finalizer's DELETEs only: a worker's classic re-entry (the provider's trigger_reentry)
    # deletes the pod in its cleanup before the task runner stores the returned value.
    deletes = [r.at for r in facts.requests if r.verb == "delete" and not r.worker]
    if expect.xcom is not NO_XCOM and deletes:
        first_store = min((at for key, at in facts.xcom_inserts if key == "return_value"), default=None)
        if first_store is None or min(deletes) < first_store:
            fail("early_delete", "a DELETE reached the pod before its XCom was stored")
    handover = handed_over_at(facts.transitions)
    if expect.worker is True and handover is None:
        fail("wrong_state", "not handed to a worker although its policy asks for one")
    if expect.worker is False and handover is not None:
        fail("needless_handover", "handed to a worker where the triggerer had to finish it")
    if handover is None:
        return
    late = [r for r in facts.requests if not r.worker and r.verb in POD_VERBS and r.at > handover]
    if late:
        verbs = ", ".join(sorted({r.verb for r in late}))
        fail("after_handover", f"{len(late)} request(s) ({verbs}) on the pod after it was handed to a worker")
