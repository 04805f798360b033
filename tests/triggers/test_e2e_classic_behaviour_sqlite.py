"""The classic operator's behaviour holds for tasks finished in the triggerer (issue 14).

One real ``airflow triggerer`` (SQLite metadata DB and ledger); each task is deferred with the
trigger its own DAG operator builds:
- ``execution_timeout``: the task fails at the operator's deadline and its pod is deleted, as the
  provider's trigger (status ``timeout``) and ``trigger_reentry`` do, well before Airflow's own
  defer timeout;
- a user marks the task success or failed, or clears it, while its pod is being finalized (the
  XCom read held by fake-kube latency): the user's state stands, the finalizer finishes its steps
  without ending the task, and the pod is deleted (``on_kill_action``), as on the classic path;
- a pool with ``include_deferred``: the deferred task holds its slot through the finalization and
  gives it back when it ends (on the classic path it gives it back when its trigger fires).
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

import pytest

from finalizer.jobs import Step
from finalizer.testing.airflow_env import AirflowEnv, TIInfo
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from tests.triggers import behaviour, e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]

ENDED = {"scheduled", "success", "failed", "up_for_retry", "skipped"}
#: How long the fake holds the XCom read of a pod under a user action (the action lands inside it).
HELD_READ_SECONDS = 6.0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, kubeconfig_path: Path) -> AirflowEnv:
    return behaviour.prepare_env(tmp_path_factory.mktemp("airflow-classic-behaviour"), None, kubeconfig_path)


def _ledger(env: AirflowEnv) -> Path:
    return env.home / "ledger.sqlite3"  # conftest's ledger_url


def _pod_gone(kube: FakeKube, pod: e2e.PodHandle) -> bool:
    return kube.get_pod(pod.namespace, pod.name) is None


async def _defer_and_follow(
    env: AirflowEnv, app: Any, kube: FakeKube, task_id: str, *, follow: bool = True, **trigger_args: Any
) -> tuple[TIInfo, e2e.PodHandle]:
    """Defer the task's TI on a new running pod; return once the finalizer follows it (``follow``)."""
    pod = behaviour.pod_for(kube, task_id, xcom=f'{{"task": "{task_id}"}}')
    trigger, timeout = behaviour.trigger_for(env, task_id, pod, **trigger_args)
    ti = env.create_run(behaviour.DAG_ID).ti(task_id)
    since = datetime.datetime.now(datetime.UTC).timestamp()
    await behaviour.defer(env, app, ti, trigger, defer_timeout=timeout)
    if follow:
        wait_for(lambda: e2e.followed_since(kube, pod, since), 60, 0.05, "the finalizer to follow the pod")
    return ti, pod


@pytest.mark.anyio
async def test_execution_timeout_fails_the_task_at_the_deadline_and_deletes_the_pod(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube
) -> None:
    started = datetime.datetime.now(datetime.UTC)
    # Not waiting for the watch: on a loaded machine the deadline may pass before it starts.
    ti, pod = await _defer_and_follow(env, app, fake_kube, "timeout", follow=False, started=started)
    # The operator's own translation: a deadline 6 s after the start, Airflow's timeout 60 s later.
    trigger, timeout = behaviour.trigger_for(env, "timeout", pod, started=started)
    assert trigger.trigger_kwargs["_execution_deadline"] == int(started.timestamp() + 6)
    assert timeout is not None
    assert timeout.total_seconds() >= 60
    final = wait_for_ti_state(ti, ENDED, timeout=60)  # the pod never ends on its own
    ended_after = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    assert final.state == "failed", trigger_logs(env, ti)[-3000:]
    assert ended_after < 60, "ended by Airflow's defer timeout, not by the operator's deadline"
    assert "execution_timeout deadline" in trigger_logs(env, ti)
    wait_for(lambda: _pod_gone(fake_kube, pod), 30, what="the timed-out pod deleted")


def _mark(state: str) -> Any:
    def act(env: AirflowEnv, ti: TIInfo) -> None:
        env.set_ti_state(current_ti(ti).id, state)  # what "mark success/failed" does to the row

    return act


def _clear(env: AirflowEnv, ti: TIInfo) -> None:
    """Airflow's own clear (the UI's and the API's): a new try, state None, trigger dropped."""
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.get(TaskInstance, uuid.UUID(current_ti(ti).id))
        assert row is not None
        clear_task_instances([row], session)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("task_id", "action", "expected"),
    [
        ("mark_success", _mark("success"), "success"),
        ("mark_failed", _mark("failed"), "failed"),
        ("clear", _clear, None),
    ],
    ids=["mark-success", "mark-failed", "clear"],
)
async def test_user_action_while_the_pod_is_being_finalized_stands(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    app: Any,
    fake_kube: FakeKube,
    task_id: str,
    action: Any,
    expected: str | None,
) -> None:
    ti, pod = await _defer_and_follow(env, app, fake_kube, task_id)
    held = fake_kube.faults.add(
        "GET", rf"/pods/{pod.name}/exec", status=None, latency=HELD_READ_SECONDS, times=1
    )
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    wait_for(lambda: held.fired >= 1, 60, 0.02, "the finalizer's XCom read to reach the fake")
    assert current_ti(ti).state == "deferred"  # the action lands mid-finalization
    action(env, ti)
    wait_for(lambda: _pod_gone(fake_kube, pod), 60, 0.1, "the pod deleted")
    # The finalizer went on to its last step, and did not end the task the user acted on.
    wait_for(
        lambda: behaviour.ledger_step(_ledger(env), ti) == Step.DONE, 60, 0.1, "the finalizer's job to finish"
    )
    # Either on_kill ran (the triggerer passed the cancel on first), or the trigger's end event
    # came first and Airflow dropped it (it ends only a DEFERRED task): the user's state stands.
    assert current_ti(ti).state == expected, trigger_logs(env, ti)[-3000:]


def _pool_slots() -> tuple[int, int]:
    """(occupied, deferred) slots of the behaviour pool, as the scheduler counts them."""
    from airflow.models.pool import Pool

    pool = Pool.get_pool(behaviour.POOL)
    assert pool is not None
    assert pool.include_deferred
    return pool.occupied_slots(), pool.deferred_slots()


@pytest.mark.anyio
async def test_pool_slot_with_include_deferred_is_held_until_the_task_ends(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube
) -> None:
    assert _pool_slots() == (0, 0)
    ti, pod = await _defer_and_follow(env, app, fake_kube, "pooled")
    assert _pool_slots() == (1, 1)
    held = fake_kube.faults.add("GET", rf"/pods/{pod.name}/exec", status=None, latency=3.0, times=1)
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    wait_for(lambda: held.fired >= 1, 60, 0.02, "the finalizer's XCom read to reach the fake")
    # Base container ended, pod being finalized: still deferred, still holding its slot.
    assert current_ti(ti).state == "deferred"
    assert _pool_slots() == (1, 1)
    final = wait_for_ti_state(ti, ENDED, timeout=60)
    assert final.state == "success", trigger_logs(env, ti)[-3000:]
    assert _pool_slots() == (0, 0)
    assert e2e.xcom(env, ti) == {"task": "pooled"}
