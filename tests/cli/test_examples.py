"""examples/ must be usable as shipped: DAGs parse in Airflow's DagBag, YAML is valid, the env file
names only options kpo-finalizer knows (the airflow.cfg snippet: ``test_cfg_snippet.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
