"""``finalizer.testing.airflow_env``: what other tests and the demo rely on, beyond the API tests."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from api_client import XComRef
from finalizer.testing.airflow_env import AirflowEnv
from tests.support.airflow_api import DAG_ID, AirflowAPI

pytestmark = pytest.mark.anyio

CHILD = textwrap.dedent(
    """
    import json, sys
    from finalizer.testing.airflow_env import AirflowEnv
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    dag_id, run_id, task_id, ti_id, trigger_id = sys.argv[1:6]
    env = AirflowEnv.from_environ()  # set by the parent
    with create_session() as session:
        trigger = session.get(Trigger, int(trigger_id))
        kwargs = trigger.kwargs
    print(json.dumps({
        "xcom": env.get_xcom(dag_id, run_id, task_id, "return_value"),
        "state": env.get_ti(ti_id).state,
        "trigger_kwargs": kwargs,
    }))
    """
)


async def test_another_process_shares_the_db_and_keys(airflow_api: AirflowAPI) -> None:
    """A child started with ``env.env`` (as ``airflow triggerer`` would be) sees our rows and can
    decrypt trigger kwargs: same DB, same Fernet key."""
    ti = airflow_api.new_ti("running")
    ref = XComRef(DAG_ID, ti.run_id, ti.task_id, "return_value")
    async with airflow_api.client(ti=ti) as client:
        await client.xcoms.set(ref, {"shared": [1, 2]})
    trigger_id = airflow_api.env.defer_ti(ti.id, "airflow.triggers.testing.SuccessTrigger", {"n": 7})
    argv = [sys.executable, "-c", CHILD, DAG_ID, ti.run_id, ti.task_id, ti.id, str(trigger_id)]
    with anyio.fail_after(120):
        result = await anyio.run_process(argv, env=airflow_api.env.env | _path_env(), check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert out == {"xcom": {"shared": [1, 2]}, "state": "deferred", "trigger_kwargs": {"n": 7}}


def _path_env() -> dict[str, str]:
    import os

    keep = ("PATH", "HOME", "LANG", "NO_PROXY", "no_proxy", "VIRTUAL_ENV")
    return {k: os.environ[k] for k in keep if k in os.environ}


def test_from_environ_needs_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    with pytest.raises(RuntimeError, match="AIRFLOW_HOME"):
        AirflowEnv.from_environ()


def test_prepare_rejects_bad_input(tmp_path: Path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="in-memory"):
            AirflowEnv.prepare(tmp_path, url)
    with pytest.raises(ValueError, match="64 bytes"):
        AirflowEnv.prepare(tmp_path, jwt_secret="short")


async def test_unknown_dag_and_ti_are_clear_errors(airflow_api: AirflowAPI) -> None:
    with pytest.raises(KeyError, match="not in the DB"):
        airflow_api.env.create_run("no_such_dag")
    with pytest.raises(KeyError, match="no task instance"):
        airflow_api.env.get_ti("01a20187-4c82-7196-a5a4-8e0b7b942742")


async def test_dag_import_error_is_reported(airflow_api: AirflowAPI) -> None:
    env = airflow_api.env
    # (DagBag skips files that mention neither "airflow" nor "dag": this one mentions both.)
    path = env.write_dag("broken_dag.py", "from airflow.sdk import DAG\nimport this_module_does_not_exist\n")
    try:
        with pytest.raises(RuntimeError, match=r"broken_dag\.py"):
            env.sync_dags()
    finally:
        path.unlink()
