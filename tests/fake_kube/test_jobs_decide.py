"""The job controller's pure parts, table-driven: one sync's decision, back-off, indexes, admission."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from finalizer.testing.fake_kube import job_spec
from finalizer.testing.fake_kube.job_status import (
    JobView,
    Plan,
    PodView,
    Tally,
    backoff_delay,
    compress_indexes,
    decide,
)
from finalizer.testing.fake_kube.jobs import job_manifest

NOW = 1_000.0
JOB = JobView(
    parallelism=1,
    completions=1,
    backoff_limit=6,
    deadline_seconds=None,
    indexed=False,
    suspended=False,
    deleting=False,
    start=NOW - 1,
)


def running(name: str, index: int | None = None, ready: bool = True) -> PodView:
    return PodView(name=name, phase="Running", deleting=False, ready=ready, index=index)


def ended(name: str, phase: str, index: int | None = None) -> PodView:
    return PodView(name=name, phase=phase, deleting=False, ready=False, index=index)


def terminating(name: str) -> PodView:
    return PodView(name=name, phase="Running", deleting=True, ready=False, index=None)


CASES: list[tuple[str, JobView, list[PodView], Tally, dict[str, Any]]] = [
    (
        "new job: one pod, start set",
        replace(JOB, start=None),
        [],
        Tally(),
        {"create": (None,), "set_start": True},
    ),
    ("running: nothing to do", JOB, [running("a")], Tally(), {"active": 1, "ready": 1}),
    (
        "parallel 3 of 5 completions, 1 done",
        replace(JOB, parallelism=3, completions=5),
        [running("a"), ended("b", "Succeeded")],
        Tally(succeeded=1),
        {"create": (None, None), "active": 1, "ready": 1},
    ),
    (
        "never more than the completions missing",
        replace(JOB, parallelism=3, completions=5),
        [running("a")],
        Tally(succeeded=3),
        {"create": (None,), "active": 1, "ready": 1},
    ),
    (
        "work queue: parallelism pods at first",
        replace(JOB, parallelism=3, completions=None),
        [],
        Tally(),
        {"create": (None, None, None)},
    ),
    (
        "work queue: none after the first success, wait for the rest",
        replace(JOB, parallelism=3, completions=None),
        [running("a"), running("b")],
        Tally(succeeded=1),
        {"active": 2, "ready": 2},
    ),
    (
        "work queue: success once no pod is active",
        replace(JOB, parallelism=3, completions=None),
        [],
        Tally(succeeded=2),
        {
            "condition": (
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
        },
    ),
    (
        "completions reached: SuccessCriteriaMet first",
        JOB,
        [ended("a", "Succeeded")],
        Tally(succeeded=1),
        {
            "condition": (
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
        },
    ),
    (
        "then Complete",
        replace(JOB, conditions={"SuccessCriteriaMet": "CompletionsReached"}),
        [ended("a", "Succeeded")],
        Tally(succeeded=1),
        {"condition": ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")},
    ),
    (
        "failure within the limit: replaced",
        replace(JOB, backoff_limit=2),
        [ended("a", "Failed")],
        Tally(failed=1, last_failure=NOW - 100),
        {"create": (None,)},
    ),
    (
        "replacement waits for the back-off",
        replace(JOB, backoff_limit=2),
        [ended("a", "Failed")],
        Tally(failed=2, last_failure=NOW - 1),
        {"wake_at": NOW - 1 + 20.0},
    ),
    (
        "backoffLimit exceeded: FailureTarget, the rest deleted",
        replace(JOB, parallelism=2, completions=2, backoff_limit=0),
        [ended("a", "Failed"), running("b")],
        Tally(failed=1, last_failure=NOW),
        {
            "condition": (
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ),
            "delete": ("b",),
            "active": 1,
            "ready": 1,
        },
    ),
    (
        "FailureTarget: Failed waits for terminating pods",
        replace(JOB, conditions={"FailureTarget": "BackoffLimitExceeded"}),
        [terminating("b")],
        Tally(failed=1),
        {"terminating": 1},
    ),
    (
        "FailureTarget and no pod left: Failed, same reason",
        replace(JOB, conditions={"FailureTarget": "DeadlineExceeded"}),
        [],
        Tally(failed=1),
        {"condition": ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")},
    ),
    (
        "deadline passed: FailureTarget DeadlineExceeded",
        replace(JOB, deadline_seconds=5, start=NOW - 5),
        [running("a")],
        Tally(),
        {
            "condition": (
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ),
            "delete": ("a",),
            "active": 1,
            "ready": 1,
        },
    ),
    (
        "deadline ahead: wake then",
        replace(JOB, deadline_seconds=5, start=NOW - 1),
        [running("a")],
        Tally(),
        {"wake_at": NOW + 4, "active": 1, "ready": 1},
    ),
    (
        "indexed: the lowest free indexes",
        replace(JOB, parallelism=2, completions=4, indexed=True),
        [running("a", index=1)],
        Tally(succeeded=1, succeeded_indexes=frozenset({0})),
        {"create": (2,), "active": 1, "ready": 1},
    ),
    (
        "indexed: every index done",
        replace(JOB, parallelism=2, completions=2, indexed=True),
        [],
        Tally(succeeded=2, succeeded_indexes=frozenset({0, 1})),
        {
            "condition": (
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
        },
    ),
    (
        "being deleted: no new pods",
        replace(JOB, deleting=True, start=None),
        [],
        Tally(),
        {"set_start": True},
    ),
    (
        "suspended: Suspended, pods deleted",
        replace(JOB, suspended=True, start=None),
        [running("a", ready=False)],
        Tally(),
        {
            "condition": ("Suspended", "JobSuspended", "Job suspended"),
            "delete": ("a",),
            "uncounted": True,
            "active": 1,
        },
    ),
    (
        "resumed: Suspended turns False, the clock restarts",
        replace(JOB, conditions={"Suspended": "JobSuspended"}),
        [],
        Tally(),
        {
            "condition": ("Suspended", "JobResumed", "Job resumed"),
            "condition_status": "False",
            "set_start": True,
        },
    ),
    (
        "finished: only counters",
        replace(
            JOB, conditions={"SuccessCriteriaMet": "CompletionsReached", "Complete": "CompletionsReached"}
        ),
        [ended("a", "Succeeded")],
        Tally(succeeded=1),
        {},
    ),
]


@pytest.mark.parametrize(
    ("job", "pods", "tally", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(job: JobView, pods: list[PodView], tally: Tally, expected: dict[str, Any]) -> None:
    assert decide(job, pods, tally, NOW, backoff_base=10.0) == Plan(**expected)


@pytest.mark.parametrize(
    ("failed", "base", "delay"),
    [(0, 10.0, 0.0), (1, 10.0, 10.0), (3, 10.0, 40.0), (10, 10.0, 360.0), (2, 0.0, 0.0)],
)
def test_backoff_delay(failed: int, base: float, delay: float) -> None:
    assert backoff_delay(failed, base) == delay


@pytest.mark.parametrize(
    ("indexes", "text"), [(set(), ""), ({0}, "0"), ({0, 1, 2}, "0-2"), ({0, 1, 2, 4, 6, 7}, "0-2,4,6-7")]
)
def test_compress_indexes(indexes: set[int], text: str) -> None:
    assert compress_indexes(frozenset(indexes)) == text


def test_several_errors_join_in_brackets() -> None:
    manifest = job_manifest("two", parallelism=-1)
    manifest["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    errors = job_spec.validate(manifest)
    assert [e.field for e in errors] == ["spec.parallelism", "spec.template.spec.restartPolicy"]
    message = job_spec.invalid_message("two", errors)
    assert message.startswith('Job.batch "two" is invalid: [spec.parallelism: Invalid value: -1')


def test_missing_spec_is_required() -> None:
    errors = job_spec.validate({"metadata": {"name": "x"}})
    assert [(e.field, e.reason) for e in errors] == [("spec.template", "FieldValueRequired")]


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        ({"matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}]}, "k in (x,y)"),
        ({"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["x"]}]}, "k notin (x)"),
        ({"matchExpressions": [{"key": "k", "operator": "Exists"}]}, "k"),
        ({"matchExpressions": [{"key": "k", "operator": "DoesNotExist"}]}, "!k"),
    ],
)
def test_selector_text(selector: dict[str, Any], text: str) -> None:
    assert job_spec.selector_text(selector) == text


def test_unknown_selector_operator_is_an_error() -> None:
    manifest = job_manifest("op")
    manifest["spec"].update(
        manualSelector=True, selector={"matchExpressions": [{"key": "k", "operator": "Near"}]}
    )
    [error] = job_spec.validate(manifest)
    assert error.field == "spec.selector"
    assert "not a valid label selector operator" in error.message


def test_pod_manifest_for_an_index() -> None:
    job = job_spec.admit(job_manifest("ix", completions=2, completion_mode="Indexed"), "ns", 5)
    pod = job_spec.pod_manifest(job, 1)
    assert pod["metadata"]["generateName"] == "ix-1-"
    assert pod["metadata"]["labels"][job_spec.COMPLETION_INDEX] == "1"
    assert job_spec.owner_uid(pod) == job["metadata"]["uid"]
    assert job["spec"]["template"]["spec"].get("hostname") is None  # the template itself is untouched
