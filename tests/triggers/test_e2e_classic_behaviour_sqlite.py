"""The classic operator's behaviour holds for tasks finished in the triggerer (issue 14).

One real ``airflow triggerer`` (SQLite metadata DB and ledger); each task is deferred with the
trigger its own DAG operator builds:
- ``execution_timeout``: the task fails at the operator's deadline and its pod is deleted, as the
  provider's trigger (status ``timeout``) and ``trigger_reentry`` do, well before Airflow's own
  defer timeout;
- a user marks the task success or failed through Airflow's Public API (the UI's PATCH), or
  clears it, while its pod is being finalized (a read held by fake-kube latency): the user's state
  stands against the opposite outcome the pod would give, on_kill deletes the pod
  (``on_kill_action``), and the finalizer finishes its steps without ending the task, as on the
  classic path; a pod still running when marked success is deleted by on_kill alone;
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
from tests.support.public_api import public_api, set_state
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


def _clear(env: AirflowEnv, ti: TIInfo) -> None:
    """Airflow's own clear (the UI's and the API's): a new try, state None, trigger dropped."""
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.get(TaskInstance, uuid.UUID(current_ti(ti).id))
        assert row is not None
        clear_task_instances([row], session)


def _killed_by_on_kill(env: AirflowEnv, ti: TIInfo, state: str) -> bool:
    """The trigger's on_kill saw the user's state and deleted the pod (``on_kill_action``)."""
    return f"on_kill: task is {state}; deleting pod" in trigger_logs(env, ti)


async def _finalizing(
    env: AirflowEnv, app: Any, kube: FakeKube, task_id: str, *, exit_code: int, held: str
) -> tuple[TIInfo, e2e.PodHandle]:
    """A deferred TI whose pod ended with ``exit_code``; the finalizer's ``held`` read (a path
    regex under the pod) is held by the fake, so a user action lands mid-finalization."""
    ti, pod = await _defer_and_follow(env, app, kube, task_id)
    kube.set_logs(e2e.NAMESPACE, pod.name, "base", [f"{task_id}: working", f"{task_id}: exit {exit_code}"])
    hold = kube.faults.add(
        "GET", rf"/pods/{pod.name}/{held}", status=None, latency=HELD_READ_SECONDS, times=1
    )
    kube.terminate(e2e.NAMESPACE, pod.name, exit_code=exit_code)
    wait_for(lambda: hold.fired >= 1, 60, 0.02, f"the finalizer's {held} read to reach the fake")
    assert current_ti(ti).state == "deferred"  # the action lands mid-finalization
    return ti, pod


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("task_id", "exit_code", "held", "state"),
    [
        # The pod failed: left alone, the finalizer would end the task FAILED (its log read held).
        ("mark_success", 1, "log", "success"),
        # The pod succeeded: left alone, the finalizer would end the task SUCCESS (XCom read held).
        ("mark_failed", 0, "exec", "failed"),
    ],
    ids=["mark-success-on-a-failing-pod", "mark-failed-on-a-succeeding-pod"],
)
async def test_mark_via_the_public_api_while_the_pod_is_being_finalized_stands(
    env: AirflowEnv,
    triggerer: TriggererProcess,
    app: Any,
    fake_kube: FakeKube,
    task_id: str,
    exit_code: int,
    held: str,
    state: str,
) -> None:
    async with public_api() as api:  # started first: its app's cold start takes seconds
        ti, pod = await _finalizing(env, app, fake_kube, task_id, exit_code=exit_code, held=held)
        answer = await set_state(api, ti, state)  # the UI's "Mark as ..." (PATCH /api/v2/...)
    assert [t["state"] for t in answer["task_instances"]] == [state]
    # on_kill saw the user's state and applied on_kill_action (delete_pod) while the read was held.
    wait_for(lambda: _killed_by_on_kill(env, ti, state), 60, 0.1, "on_kill to delete the pod")
    wait_for(lambda: _pod_gone(fake_kube, pod), 60, 0.1, "the pod deleted")
    # The finalizer went on to its last step, and did not end the task the user acted on.
    wait_for(
        lambda: behaviour.ledger_step(_ledger(env), ti) == Step.DONE, 60, 0.1, "the finalizer's job to finish"
    )
    assert current_ti(ti).state == state, trigger_logs(env, ti)[-3000:]


@pytest.mark.anyio
async def test_mark_success_via_the_public_api_while_the_pod_runs_deletes_it_per_on_kill(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube
) -> None:
    """A pod that would run for ever: only on_kill (``on_kill_action=delete_pod``) removes it."""
    async with public_api() as api:
        ti, pod = await _defer_and_follow(env, app, fake_kube, "mark_success")
        await set_state(api, ti, "success")
    wait_for(lambda: _pod_gone(fake_kube, pod), 60, 0.1, "on_kill to delete the running pod")
    assert _killed_by_on_kill(env, ti, "success"), trigger_logs(env, ti)[-3000:]
    # The finalizer then sees its pod gone and ends its job, without touching the user's state.
    wait_for(
        lambda: behaviour.ledger_step(_ledger(env), ti) == Step.DONE, 60, 0.1, "the finalizer's job to finish"
    )
    assert current_ti(ti).state == "success", trigger_logs(env, ti)[-3000:]


@pytest.mark.anyio
async def test_clear_while_the_pod_is_being_finalized_stands(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube
) -> None:
    ti, pod = await _finalizing(env, app, fake_kube, "clear", exit_code=0, held="exec")
    _clear(env, ti)
    wait_for(lambda: _pod_gone(fake_kube, pod), 60, 0.1, "the pod deleted")
    wait_for(
        lambda: behaviour.ledger_step(_ledger(env), ti) == Step.DONE, 60, 0.1, "the finalizer's job to finish"
    )
    # Either on_kill ran (the triggerer passed the cancel on first), or the trigger's end event
    # came first and Airflow dropped it (it ends only a DEFERRED task): the cleared state stands.
    assert current_ti(ti).state is None, trigger_logs(env, ti)[-3000:]


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
