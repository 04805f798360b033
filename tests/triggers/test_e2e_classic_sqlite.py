"""A real `airflow triggerer` on SQLite runs FinalizingPodTrigger's classic path (finalization off)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.triggerer import TriggererProcess, wait_for_ti_state
from tests.triggers import e2e

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    return e2e.prepare_env(tmp_path_factory.mktemp("airflow-classic"), None)


@pytest.fixture(scope="module")
def triggerer(env: AirflowEnv) -> Iterator[TriggererProcess]:
    env.activate()
    with TriggererProcess(env, extra_env=e2e.TRIGGERER_ENV) as proc:
        yield proc


@pytest.fixture
async def app(env: AirflowEnv) -> AsyncIterator[Any]:
    env.activate()
    async with env.execution_api_app() as application:
        yield application


@pytest.mark.anyio
async def test_disabled_finalization_yields_the_classic_event_for_trigger_reentry(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, kubeconfig_path: Path
) -> None:
    pod = e2e.new_pod(fake_kube, "classic-1")
    fake_kube.write_xcom(e2e.NAMESPACE, pod.name, '{"a": 1}')
    trigger = e2e.build_trigger(kubeconfig_path, pod, "no_retry", finalization={"enabled": False})
    run = env.create_run(e2e.DAG_ID)
    ti = run.ti("no_retry")
    await e2e.defer(env, app, ti, trigger)
    assert env.get_ti(ti.id).state == "deferred"
    fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=0)
    final = wait_for_ti_state(ti, {"scheduled", "success", "failed"}, timeout=60)
    # The classic path hands the task back to the scheduler for a worker's trigger_reentry,
    # and leaves the pod (and its XCom) to that worker.
    assert final.state == "scheduled", triggerer.logs()[-3000:]
    assert fake_kube.get_pod(e2e.NAMESPACE, pod.name) is not None
    assert not e2e.has_xcom(env, ti)
