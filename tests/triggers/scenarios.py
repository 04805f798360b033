"""The end-to-end scenario matrix, run once per database against one real triggerer.

Every scenario is one TI of the same dag run, deferred exactly as a worker does; all pods are
driven at once and the results are read back through Airflow's own models. The test modules
(``test_e2e_sqlite.py``, ``test_e2e_postgres.py``) assert on the collected results case by case.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from finalizer.testing.airflow_env import AirflowEnv, TIInfo
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti
from tests.triggers import e2e

FINAL_STATES = {"success", "failed", "skipped", "up_for_retry", "scheduled", "up_for_reschedule"}
MISSING = object()


@dataclass(frozen=True)
class Case:
    """One scenario: how the pod behaves, and what Airflow must show afterwards."""

    task_id: str
    drive: Callable[[FakeKube, e2e.PodHandle], None]
    state: str
    xcoms: dict[str, Any] = field(default_factory=dict)  # key -> value; MISSING = must not exist
    pod_kept: bool = False
    log_contains: tuple[str, ...] = ()
    operator: dict[str, Any] = field(default_factory=dict)
    xcom_file: str | None = None
    start: bool = True
    #: Expected TaskMap length (a mapped task consumes this XCom), None = not checked.
    task_map_length: int | None = None


def _exit(code: int) -> Callable[[FakeKube, e2e.PodHandle], None]:
    def drive(kube: FakeKube, pod: e2e.PodHandle) -> None:
        kube.terminate(pod.namespace, pod.name, exit_code=code, message=f"exited {code} on purpose")

    return drive


def _log_and_exit_0(kube: FakeKube, pod: e2e.PodHandle) -> None:
    kube.set_logs(pod.namespace, pod.name, "base", ["starting", f"hello from {pod.name}"])
    _exit(0)(kube, pod)


def _image_pull(kube: FakeKube, pod: e2e.PodHandle) -> None:
    kube.image_pull_failure(
        pod.namespace, pod.name, reason="ImagePullBackOff", message='Back-off pulling image "no/such:tag"'
    )


def _evicted_before_read(kube: FakeKube, pod: e2e.PodHandle) -> None:
    # The node loses the containers (exec fails), the base container had exited 0, then the pod
    # is evicted: the XCom cannot be read any more.
    kube.kubelet_forget(pod.namespace, pod.name)
    kube.terminate(pod.namespace, pod.name, exit_code=0)
    kube.evict(pod.namespace, pod.name)


def _nothing(kube: FakeKube, pod: e2e.PodHandle) -> None:
    """The pod is left as it is (a start-up clock or the execution deadline ends the wait)."""


CASES: list[Case] = [
    Case(
        "dict",
        _exit(0),
        "success",
        {"return_value": {"rows": 3, "files": ["a", "b"]}},
        xcom_file='{"rows": 3, "files": ["a", "b"]}',
    ),
    Case(
        "list",
        _exit(0),
        "success",
        {"return_value": [1, "two", None, 4.5]},
        xcom_file='[1, "two", null, 4.5]',
    ),
    # get_logs (the operator's default): the task log shows the container's log, as upstream writes it.
    Case(
        "scalar",
        _log_and_exit_0,
        "success",
        {"return_value": 42},
        xcom_file="42",
        log_contains=("[base] logs: starting", "[base] logs: hello from e2e-"),
    ),
    Case("empty", _exit(0), "success", {"return_value": MISSING}, xcom_file=""),
    Case(
        "multi",
        _exit(0),
        "success",
        {"return_value": {"n": 7, "name": "x", "items": [1, 2]}, "n": 7, "name": "x", "items": [1, 2]},
        operator={"multiple_outputs": True},
        xcom_file='{"n": 7, "name": "x", "items": [1, 2]}',
    ),
    # The sidecar XCom is pushed for a failed task too, as upstream 10.25.0 does in trigger_reentry.
    Case(
        "fail",
        _exit(1),
        "failed",
        {"return_value": {"partial": True}},
        log_contains=("exited with code 1",),
        xcom_file='{"partial": true}',
    ),
    Case("fail_retry", _exit(1), "up_for_retry", log_contains=("exited with code 1",)),
    Case(
        "skip",
        _exit(99),
        "skipped",
        {"return_value": MISSING},
        operator={"skip_on_exit_code": [99]},
        xcom_file="",
    ),
    Case(
        "bad_json",
        _exit(0),
        "failed",
        {"return_value": MISSING},
        log_contains=("not valid JSON",),
        xcom_file="{not json",
    ),
    Case("image_pull", _image_pull, "failed", log_contains=("ImagePullBackOff",), start=False),
    Case(
        "evicted",
        _evicted_before_read,
        "failed",
        {"return_value": MISSING},
        log_contains=("XCom was lost",),
        xcom_file='{"a": 1}',
    ),
    Case(
        "e",
        _nothing,
        "failed",
        log_contains=("took too long to be scheduled",),
        operator={"schedule_timeout_seconds": 3},
        start=False,
    ),
    Case(
        "f",
        _nothing,
        "failed",
        log_contains=("execution_timeout deadline",),
        operator={"deadline_in": 4},
    ),
    Case(
        "mapped_src",
        _exit(0),
        "success",
        {"return_value": ["x", "y", "z"]},
        xcom_file='["x", "y", "z"]',
        task_map_length=3,
    ),
    Case(
        "keep",
        _exit(0),
        "success",
        {"return_value": {"kept": True}},
        pod_kept=True,
        operator={"on_finish_action": "keep_pod"},
        xcom_file='{"kept": true}',
    ),
]


@dataclass
class Result:
    case: Case
    ti: TIInfo
    pod: e2e.PodHandle
    final: TIInfo
    xcoms: dict[str, Any]
    pod_json: dict[str, Any] | None
    log: str
    seconds: float


def run_matrix_sync(env: AirflowEnv, kube: FakeKube, kubeconfig: Path, prefix: str) -> dict[str, Result]:
    """``run_matrix`` from synchronous code (a module-scoped fixture), with its own Execution API app."""

    async def main() -> dict[str, Result]:
        env.activate()
        async with env.execution_api_app() as app:
            return await run_matrix(env, app, kube, kubeconfig, prefix)

    return anyio.run(main)


async def run_matrix(
    env: AirflowEnv, app: Any, kube: FakeKube, kubeconfig: Path, prefix: str, wait_seconds: float = 150
) -> dict[str, Result]:
    """Defer every case's TI, drive its pod, wait for every TI to end; collect what Airflow shows."""
    run = env.create_run(e2e.DAG_ID)
    started: dict[str, tuple[Case, TIInfo, e2e.PodHandle, float]] = {}
    for case in CASES:
        pod = e2e.new_pod(kube, f"{prefix}-{case.task_id.replace('_', '-')}", running=case.start)
        if case.xcom_file is not None:
            kube.write_xcom(pod.namespace, pod.name, case.xcom_file)
        operator = dict(case.operator)
        if "deadline_in" in operator:
            # The operator's translation of execution_timeout, as invoke_defer_method does it.
            deadline = int(time.time() + operator.pop("deadline_in"))
            operator["trigger_kwargs"] = {"_execution_deadline": deadline}
        trigger = e2e.build_trigger(kubeconfig, pod, case.task_id, **operator)
        if case.task_map_length is not None:
            # The operator sets this from the DAG (a mapped task depends on it); build_trigger's
            # stand-alone operator has no DAG, so say it here (the operator side is unit-tested).
            trigger.xcom_mapped_length = True
        ti = run.ti(case.task_id)
        await e2e.defer(env, app, ti, trigger)
        started[case.task_id] = (case, ti, pod, 0.0)
    for task_id, (case, ti, pod, _) in list(started.items()):
        case.drive(kube, pod)
        started[task_id] = (case, ti, pod, time.monotonic())

    results: dict[str, Result] = {}
    until = time.monotonic() + wait_seconds
    while len(results) < len(started) and time.monotonic() < until:
        for task_id, (case, ti, pod, t0) in started.items():
            if task_id in results:
                continue
            final = current_ti(ti)
            if final.state in FINAL_STATES:
                results[task_id] = _collect(env, kube, case, ti, pod, final, time.monotonic() - t0)
        await anyio.sleep(0.3)
    for task_id, (case, ti, pod, t0) in started.items():
        if task_id not in results:
            results[task_id] = _collect(env, kube, case, ti, pod, current_ti(ti), time.monotonic() - t0)
    for task_id, result in results.items():
        # Shown with ``pytest -s``: pod event -> TI state visible in Airflow's DB, all pods at once.
        print(f"[kpo-finalizer e2e] {prefix} {task_id}: {result.final.state} after {result.seconds:.2f}s")
    return results


def _collect(
    env: AirflowEnv,
    kube: FakeKube,
    case: Case,
    ti: TIInfo,
    pod: e2e.PodHandle,
    final: TIInfo,
    seconds: float,
) -> Result:
    xcoms: dict[str, Any] = {}
    for key in case.xcoms:
        try:
            xcoms[key] = e2e.xcom(env, ti, key)
        except KeyError:
            xcoms[key] = MISSING
    return Result(
        case=case,
        ti=ti,
        pod=pod,
        final=final,
        xcoms=xcoms,
        pod_json=None,
        log=trigger_logs(env, ti),
        seconds=seconds,
    )


def env_task_map_length(ti: TIInfo) -> int | None:
    """``task_map.length`` for the TI (written when the XCom is pushed with a mapped length)."""
    from airflow.models.taskmap import TaskMap
    from airflow.utils.session import create_session

    with create_session() as session:
        key = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index}
        row = session.get(TaskMap, key)
        return None if row is None else int(row.length)


def check(result: Result, kube: FakeKube) -> None:
    """Assert everything the case expects (pod state is read now: deletion may take a moment)."""
    case = result.case
    where = f"{case.task_id}: trigger log:\n{result.log[-3000:]}"
    assert result.final.state == case.state, where
    for key, expected in case.xcoms.items():
        got = result.xcoms[key]
        if expected is MISSING:
            assert got is MISSING, f"{case.task_id}: XCom {key} should not exist, got {got!r}"
        else:
            assert got == expected, f"{case.task_id}: XCom {key}"
            assert type(got) is type(expected), f"{case.task_id}: XCom {key} type"
    if case.task_map_length is not None:
        ti = result.ti
        length = env_task_map_length(ti)
        assert length == case.task_map_length, f"{case.task_id}: TaskMap length {length}"
    for text in case.log_contains:
        assert text in result.log, where
    deadline = time.monotonic() + 20
    pod = kube.get_pod(result.pod.namespace, result.pod.name)
    while not case.pod_kept and pod is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        pod = kube.get_pod(result.pod.namespace, result.pod.name)
    if case.pod_kept:
        assert pod is not None, f"{case.task_id}: pod should be kept"
        assert pod["metadata"]["labels"].get("already_checked") == "True", pod["metadata"]["labels"]
    else:
        assert pod is None, f"{case.task_id}: pod should be deleted"
