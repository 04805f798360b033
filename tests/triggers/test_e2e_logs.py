"""The container's log and the finalizer's own lines, through a real `airflow triggerer` (SQLite).

What a user reads in the task log (the trigger log Airflow writes): the base container's whole log
as upstream writes it with ``get_logs``, capped by ``[kpo_finalizer] log_max_bytes``; none with
``get_logs=False``; with ``logging_interval`` the lines while the pod still runs, through one log
stream; the reason an XCom was rejected; and no process-wide finalizer line (those go to the
triggerer's own log).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv, TIInfo
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import e2e
from triggers.policy import FinalizationPolicy

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow, pytest.mark.anyio]

CAP = 64 * 1024
ENDED = {"success", "failed", "up_for_retry", "scheduled", "skipped"}
#: Every TI these tests ran, for the log-placement check at the end.
RAN: list[TIInfo] = []


@pytest.fixture(scope="module")
def extra_env(ledger_url: str) -> dict[str, str]:
    return e2e.finalizer_env(ledger_url, AIRFLOW__KPO_FINALIZER__LOG_MAX_BYTES=str(CAP))


@pytest.fixture(scope="module")
def run_id(env: AirflowEnv, triggerer: TriggererProcess) -> Any:
    """One DAG run for the module (the triggerer is up before the first task defers)."""
    return env.create_run(e2e.DAG_ID)


async def start(
    env: AirflowEnv,
    app: Any,
    kube: FakeKube,
    kubeconfig: Path,
    run: Any,
    task_id: str,
    lines: list[str],
    **operator: Any,
) -> tuple[TIInfo, e2e.PodHandle]:
    pod = e2e.new_pod(kube, f"logs-{task_id.replace('_', '-')}")
    kube.write_xcom(pod.namespace, pod.name, operator.pop("xcom", '{"ok": true}'))
    if lines:
        kube.set_logs(pod.namespace, pod.name, "base", lines)
    ti = run.ti(task_id)
    RAN.append(ti)
    await e2e.defer(env, app, ti, e2e.build_trigger(kubeconfig, pod, task_id, **operator))
    return ti, pod


def log_requests(kube: FakeKube, pod: e2e.PodHandle) -> list[str]:
    return [r.query for r in kube.requests if r.verb == "log" and r.name == pod.name]


async def test_whole_log_as_upstream_writes_it(
    env: AirflowEnv, app: Any, fake_kube: FakeKube, kubeconfig_path: Path, run_id: Any
) -> None:
    lines = [f"row {i} done 100%" for i in range(200)] + ["ERROR: this line is only text", "last line"]
    ti, pod = await start(env, app, fake_kube, kubeconfig_path, run_id, "a", lines)
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    assert wait_for_ti_state(ti, ENDED, timeout=90).state == "success"
    text = trigger_logs(env, ti)
    positions = [text.index(f"[base] logs: {line}") for line in lines]
    assert positions == sorted(positions), "the lines in order"
    assert positions[-1] < text.index("kpo-finalizer: task succeeded"), "the log before the outcome"
    assert "last lines of the base container's log" not in text  # the whole log, not the tail
    (query,) = log_requests(fake_kube, pod)  # one read, after the pod ended
    assert "follow=False" in query


async def test_get_logs_false_writes_none(
    env: AirflowEnv, app: Any, fake_kube: FakeKube, kubeconfig_path: Path, run_id: Any
) -> None:
    ti, pod = await start(
        env, app, fake_kube, kubeconfig_path, run_id, "b", ["secret-ish line"], get_logs=False
    )
    fake_kube.terminate(pod.namespace, pod.name, exit_code=1)  # not even on failure, as upstream
    assert wait_for_ti_state(ti, ENDED, timeout=90).state == "failed"
    text = trigger_logs(env, ti)
    assert "secret-ish line" not in text
    assert "[base]" not in text
    assert log_requests(fake_kube, pod) == []


async def test_the_cap_truncates_with_one_clear_line(
    env: AirflowEnv, app: Any, fake_kube: FakeKube, kubeconfig_path: Path, run_id: Any
) -> None:
    lines = [f"{i:06d} " + "z" * 200 for i in range(1000)]  # ~200 KiB > CAP
    ti, pod = await start(env, app, fake_kube, kubeconfig_path, run_id, "c", lines)
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    assert wait_for_ti_state(ti, ENDED, timeout=90).state == "success"
    text = trigger_logs(env, ti)
    assert f"[base] log truncated after {CAP} bytes" in text
    assert "[base] logs: 000000 " in text
    assert lines[-1] not in text
    written = sum(1 for line in lines if f"[base] logs: {line}" in text)
    assert 0 < written <= CAP // 208 + 1


async def test_logging_interval_shows_the_log_while_the_pod_runs(
    env: AirflowEnv, app: Any, fake_kube: FakeKube, kubeconfig_path: Path, run_id: Any
) -> None:
    ti, pod = await start(
        env, app, fake_kube, kubeconfig_path, run_id, "d", ["WARNING: warming up"], logging_interval=5
    )
    wait_for(lambda: "[base] WARNING: warming up" in trigger_logs(env, ti), 60, what="the first line, live")
    fake_kube.append_logs(pod.namespace, pod.name, "base", ["halfway there"])
    wait_for(lambda: "[base] halfway there" in trigger_logs(env, ti), 30, what="an appended line, live")
    assert fake_kube.get_pod(pod.namespace, pod.name)["status"]["phase"] == "Running"  # type: ignore[index]
    fake_kube.append_logs(pod.namespace, pod.name, "base", ["finished"])
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    assert wait_for_ti_state(ti, ENDED, timeout=90).state == "success"
    text = trigger_logs(env, ti)
    assert text.count("[base] halfway there") == 1
    assert text.index("[base] finished") < text.index("kpo-finalizer: task succeeded")
    queries = log_requests(fake_kube, pod)
    assert len(queries) == 1, queries  # ONE follow stream for the pod, not a poll
    assert "follow=True" in queries[0]
    # The live line keeps its level, as the provider's trigger logs it.
    warning = next(line for line in text.splitlines() if "[base] WARNING: warming up" in line)
    assert "warn" in warning.lower().split("[base]")[0]


async def test_a_rejected_xcom_says_so(
    env: AirflowEnv, app: Any, fake_kube: FakeKube, kubeconfig_path: Path, run_id: Any
) -> None:
    ti, pod = await start(env, app, fake_kube, kubeconfig_path, run_id, "e", [], xcom="{not json")
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    assert wait_for_ti_state(ti, ENDED, timeout=90).state == "failed"
    text = trigger_logs(env, ti)
    assert "the XCom was read and rejected" in text
    assert "not valid JSON" in text
    assert "never read" not in text
    # A failure leaves the outcome marker: the job key and the outcome, nothing more.
    marker = e2e.xcom(env, ti, "__kpo_finalizer_outcome")
    assert set(marker) == {"job", "outcome"}
    assert marker["job"].endswith(pod.uid)
    assert set(marker["outcome"]) <= {"kind", "reason", "event_status", "exit_code", "termination_message"}
    assert marker["outcome"]["kind"] == "failed"
    assert len(json.dumps(marker)) < 1024


@pytest.mark.parametrize(
    ("xcom", "max_bytes", "says"),
    [
        (b"\xff\xfe\x00binary", None, "not UTF-8"),
        (b'"' + b"x" * 200 + b'"', 64, "larger than the limit of 64 bytes"),
    ],
    ids=["binary", "too-large"],
)
async def test_a_binary_or_too_large_xcom_says_so(
    env: AirflowEnv,
    app: Any,
    fake_kube: FakeKube,
    kubeconfig_path: Path,
    triggerer: TriggererProcess,
    xcom: bytes,
    max_bytes: int | None,
    says: str,
) -> None:
    run = env.create_run(e2e.DAG_ID)  # a run of its own per case (task "e" once per run)
    policy = FinalizationPolicy(xcom_max_bytes=max_bytes)
    ti, pod = await start(env, app, fake_kube, kubeconfig_path, run, "e", [], xcom=xcom, finalization=policy)
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    assert wait_for_ti_state(ti, ENDED, timeout=90).state == "failed"
    text = trigger_logs(env, ti)
    assert "the XCom was read and rejected" in text
    assert says in text
    assert "never read" not in text
    assert not e2e.has_xcom(env, ti)  # nothing pushed


async def test_a_configured_hand_over_to_the_worker_is_info(
    env: AirflowEnv, app: Any, fake_kube: FakeKube, kubeconfig_path: Path, run_id: Any
) -> None:
    """``fallback_to_worker`` is expected behaviour: its line is INFO, not WARNING."""
    ti, pod = await start(
        env,
        app,
        fake_kube,
        kubeconfig_path,
        run_id,
        "f",
        [],
        finalization=FinalizationPolicy(fallback_to_worker=True),
    )
    fake_kube.terminate(pod.namespace, pod.name, exit_code=0)
    assert wait_for_ti_state(ti, ENDED, timeout=90).state == "scheduled"  # back to a worker
    line = next(x for x in trigger_logs(env, ti).splitlines() if "handed to the worker" in x)
    head = line.split("kpo-finalizer:")[0].lower()
    assert "info" in head, line
    assert "warning" not in head, line


async def test_process_wide_lines_go_to_the_triggerer_log(
    env: AirflowEnv, triggerer: TriggererProcess
) -> None:
    """Start-up, warm-up and drained are the triggerer's, not a task's. The last test of the
    module: it stops the triggerer (SIGTERM, a graceful shutdown) so the drain happens."""
    assert RAN, "runs after the tests above"
    wait_for(lambda: "supervisor channel warm after" in triggerer.logs(), 60, what="the warm-up line")
    assert "kpo-finalizer drained" not in triggerer.logs()  # not before the shutdown
    assert triggerer.stop() is not None
    own = triggerer.logs()
    assert "kpo-finalizer started in the trigger runner" in own
    assert "kpo-finalizer drained" in own  # the shutdown drained the finalizer, in this log
    for ti in RAN:
        text = trigger_logs(env, ti)
        for line in (
            "kpo-finalizer started",
            "supervisor channel warm",
            "kpo-finalizer drained",
            "loop runs on",
        ):
            assert line not in text, f"{ti.task_id}: {line!r} in its task log"
