"""The bad-input matrix of ``bench chaos``: one task per way a pod's output can be wrong.

Each case names the operator arguments of its task in the chaos DAG, how its pod ends, and what
Airflow must show afterwards (the same outcomes the pipeline's own tests pin down: an unusable
XCom fails the task clearly and still cleans up; a non-zero exit still pushes what the pod wrote,
as the provider does; ``fallback_to_worker`` hands the task to a worker once its XCom is safe).
"""

from __future__ import annotations

import json
from typing import Any

from finalizer.bench import chaos_tasks as tasks
from finalizer.bench.chaos_checks import Expect


def _json(value: Any) -> str:
    return json.dumps(value)


def _forget_then_evict(kube: Any, namespace: str, name: str) -> None:
    """The node loses the containers (exec fails), the base had exited 0, then the pod is evicted."""
    kube.write_xcom(namespace, name, '{"a": 1}')
    kube.kubelet_forget(namespace, name)
    kube.terminate(namespace, name, "base", 0)
    kube.evict(namespace, name)


#: task id → (operator kwargs, drive, expectation, with sidecar)
BAD_INPUT: dict[str, tuple[dict[str, Any], tasks.Drive, Expect, bool]] = {
    "bad_json": ({}, tasks.write_and_exit("{not json"), Expect("failed"), True),
    "oversized": (
        {"finalization": {"xcom_max_bytes": 1000}},
        tasks.write_and_exit(_json({"blob": "x" * 4000})),
        Expect("failed"),
        True,
    ),
    "binary": ({}, tasks.write_and_exit(b"\xff\xfe\x00\x9cnot text"), Expect("failed"), True),
    "no_sidecar": ({}, lambda k, ns, n: k.terminate(ns, n, "base", 0), Expect("failed"), False),
    "gone_before_read": ({}, _forget_then_evict, Expect("failed"), True),
    "exit_nonzero": (
        {},
        tasks.write_and_exit('{"partial": true}', 1),
        Expect("failed", {"partial": True}),
        True,
    ),
    "skip_exit": ({"skip_on_exit_code": [99]}, tasks.write_and_exit("", 99), Expect("skipped"), True),
    "empty": ({}, tasks.write_and_exit(""), Expect("success"), True),
    "null": ({}, tasks.write_and_exit("null"), Expect("success"), True),
    "keep_pod": (
        {"on_finish_action": "keep_pod"},
        tasks.write_and_exit('{"kept": true}'),
        Expect("success", {"kept": True}, keep_pod=True),
        True,
    ),
    "multiple_outputs": (
        {"multiple_outputs": True},
        tasks.write_and_exit('{"a": 1, "b": [2]}'),
        Expect("success", {"a": 1, "b": [2]}),
        True,
    ),
    "to_worker": (
        {"finalization": {"fallback_to_worker": True}},
        tasks.write_and_exit('{"via": "worker"}'),
        Expect("success", {"via": "worker"}, worker=True),
        True,
    ),
}

SPECIAL_KWARGS = {task_id: kwargs for task_id, (kwargs, _, _, _) in BAD_INPUT.items()}


def bad_input_cases() -> list[tasks.Case]:
    return [tasks.Case(t, drive, expect, sidecar) for t, (_, drive, expect, sidecar) in BAD_INPUT.items()]
