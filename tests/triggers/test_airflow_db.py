"""``status --airflow-db``'s count covers both of our triggers, and only them."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from triggers import airflow_db
from triggers import job as job_trigger
from triggers import pod as pod_trigger


def test_the_spelt_out_classpaths_are_the_triggers_own() -> None:
    assert airflow_db.CLASSPATHS == (pod_trigger.CLASSPATH, job_trigger.CLASSPATH)


def test_pod_and_job_trigger_rows_are_counted_and_no_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'airflow.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE trigger (id INTEGER PRIMARY KEY, classpath VARCHAR(1000))"))
        rows = [
            pod_trigger.CLASSPATH,
            pod_trigger.CLASSPATH,
            job_trigger.CLASSPATH,
            "airflow.providers.cncf.kubernetes.triggers.job.KubernetesJobTrigger",
            "airflow.providers.cncf.kubernetes.triggers.pod.KubernetesPodTrigger",
        ]
        for classpath in rows:
            conn.execute(sa.text("INSERT INTO trigger (classpath) VALUES (:c)"), {"c": classpath})
    engine.dispose()
    assert airflow_db.count_finalizing_triggers(url) == 3
