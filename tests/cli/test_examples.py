"""examples/ must be usable as shipped: DAGs parse in Airflow's DagBag, the fake-cluster DAG runs
against ``kpo-finalizer fake-kube`` as the README says, YAML is valid, the env file names only
options kpo-finalizer knows (the airflow.cfg snippet: ``test_cfg_snippet.py``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

PARSE_DAGS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": {d: sorted(bag.dags[d].task_ids) for d in bag.dags}}))
"""


def parse_dags(folder: Path, home: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Parse a DAG folder with Airflow's DagBag in a clean subprocess: import errors and task ids."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
            "PYTHONWARNINGS": "ignore",
            **(extra_env or {}),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", PARSE_DAGS, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.airflow
def test_example_dags_parse_in_dagbag(tmp_path: Path) -> None:
    result = parse_dags(EXAMPLES / "dags", tmp_path)
    assert result["errors"] == {}
    assert result["dags"] == {
        "kpo_finalizer_settings": ["extract", "load", "transform"],
        "kpo_finalizer_fallback": ["classic", "report_on_worker", "with_callbacks"],
        "kpo_finalizer_fake_cluster": ["bad_input", "compute", "nothing_to_do"],
    }


def test_rbac_role_grants_what_the_finalizer_does() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "rbac.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding"]
    role = docs[1]
    grants = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    needed = {("pods", v) for v in ("get", "list", "watch", "delete", "patch")}
    needed |= {("pods/exec", "create"), ("pods/log", "get")}
    assert needed <= grants
    binding = docs[2]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == docs[0]["metadata"]["name"]


def test_env_file_names_known_options() -> None:
    from finalizer.config import FinalizerConfig
    from triggers.policy import FinalizationPolicy

    known = set(FinalizationPolicy.model_fields) | set(FinalizerConfig.model_fields)
    prefix = "AIRFLOW__KPO_FINALIZER__"
    lines = [ln for ln in (EXAMPLES / "kpo_finalizer.env").read_text().splitlines() if ln and ln[0] != "#"]
    assert lines
    for line in lines:
        name, _, value = line.partition("=")
        assert name.startswith(prefix), line
        assert name[len(prefix) :].lower() in known, line
        assert value


def test_dockerfile_installs_the_package() -> None:
    text = (EXAMPLES / "Dockerfile.triggerer").read_text()
    assert text.lstrip().startswith("#")
    assert "\nFROM apache/airflow:3.3.2" in text
    assert "kpo-finalizer" in text
    assert "apache-airflow-providers-cncf-kubernetes>=10.25.0" in text


@pytest.fixture
def fake_kube_command(tmp_path: Path) -> Iterator[Path]:
    """``kpo-finalizer fake-kube --port P --kubeconfig PATH``, as the README starts it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    kubeconfig = tmp_path / "fake-kube.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finalizer.cli",
            "fake-kube",
            "--port",
            str(port),
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"fake Kubernetes API at http://127.0.0.1:{port}")
        assert proc.stdout.readline().startswith("kubeconfig written to")
        yield kubeconfig
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


@pytest.fixture
def own_airflow_environ() -> Iterator[None]:
    """``AirflowEnv.prepare`` writes this process's environment: give it back to later tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _pods_left(kubeconfig: Path) -> list[str]:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    return [p.metadata.name for p in api.list_namespaced_pod("default").items]


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("own_airflow_environ")
def test_fake_cluster_dag_runs_against_fake_kube(
    tmp_path: Path, fake_kube_command: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker runs each task (creates its pod, defers); a real triggerer finishes it."""
    from finalizer.testing.airflow_env import AirflowEnv
    from finalizer.testing.logs import trigger_logs
    from finalizer.testing.polling import wait_for_ti_state
    from finalizer.testing.triggerer_process import TriggererProcess
    from finalizer.testing.worker import run_like_worker

    monkeypatch.setenv("KPO_FINALIZER_FAKE_KUBECONFIG", str(fake_kube_command))
    env = AirflowEnv.prepare(tmp_path / "airflow")
    env.migrate()
    dag_file = EXAMPLES / "dags" / "kpo_finalizer_fake_cluster.py"
    assert "kpo_finalizer_fake_cluster" in env.add_dag(dag_file.name, dag_file.read_text())
    ledger = {"AIRFLOW__KPO_FINALIZER__LEDGER_URL": f"sqlite:///{env.home / 'ledger.sqlite3'}"}
    expected = {"compute": "success", "nothing_to_do": "skipped", "bad_input": "failed"}
    with TriggererProcess(env, extra_env={**ledger, "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1"}):
        run = env.create_run("kpo_finalizer_fake_cluster")
        tis = {task_id: run.ti(task_id) for task_id in expected}
        for ti in tis.values():
            assert run_like_worker(env, ti) == 0  # the pod is created and the task deferred
        states = {
            t: wait_for_ti_state(ti, set(expected.values()), timeout=120).state for t, ti in tis.items()
        }
        assert states == expected, {t: trigger_logs(env, ti)[-2000:] for t, ti in tis.items()}
    assert env.get_xcom(run.dag_id, run.run_id, "compute", "return_value", -1) == {
        "rows": 42,
        "table": "events",
    }
    assert "input file is empty" in trigger_logs(env, tis["bad_input"])
    assert _pods_left(fake_kube_command) == []
