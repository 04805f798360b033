"""The world ``bench triggerer`` runs its variants in, built once per invocation.

A fresh PostgreSQL metadata DB (or SQLite when no server answers: the run says so), every
variant's DAG file plus the canary DAG synced into it, the fake Kubernetes API in its own process,
the UDP receiver for the loop-lag probe and the sampler thread. Everything is undone on exit, in
reverse order; the home (logs of every triggerer) is removed unless ``keep``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finalizer.bench.triggerer_fake import FakeKubeProcess
from finalizer.bench.triggerer_sampler import LagReceiver, Sampler
from finalizer.bench.triggerer_world import canary_dag_source, dag_source


@dataclass
class World:
    home: Path
    env: Any  # AirflowEnv
    fake: FakeKubeProcess
    kubeconfig_path: Path
    lag: LagReceiver
    sampler: Sampler
    metadata_db: str  # "postgresql" | "sqlite"


def namespace(variant: str) -> str:
    return f"bench-{variant}"


@contextmanager
def world(
    variants: Sequence[str], shape: str, tasks: int, canaries: int, *, keep: bool, say: Any = print
) -> Iterator[World]:
    from finalizer.demo.stack import drop_database, fresh_postgres_url
    from finalizer.testing.airflow_env import AirflowEnv

    with ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="kpo-bench-triggerer-"))
        if keep:
            stack.callback(say, f"kept {home}")
        else:
            stack.callback(shutil.rmtree, home, True)
        fake = stack.enter_context(FakeKubeProcess())
        kubeconfig_path = home / "kubeconfig.json"
        kubeconfig_path.write_text(json.dumps(fake.kubeconfig))
        db_url = fresh_postgres_url()
        if db_url is None:
            say("no PostgreSQL reachable: the metadata DB falls back to SQLite (not like production)")
        else:
            stack.callback(drop_database, db_url)
        os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
        os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
        env = AirflowEnv.prepare(
            home / "airflow",
            db_url,
            extra_env={"AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps({"conn_type": "kubernetes"})},
        )
        say(f"metadata DB: {'PostgreSQL' if db_url else 'SQLite'}; migrating…")
        env.migrate()
        for variant in variants:
            env.write_dag(f"bt_{variant}.py", dag_source(variant, shape, tasks, namespace(variant)))
        env.write_dag("bt_canary.py", canary_dag_source(canaries))
        say(f"syncing the DAGs ({shape} shape, {tasks} tasks per variant)…")
        env.sync_dags()
        lag = stack.enter_context(LagReceiver())
        sampler = stack.enter_context(Sampler(fake.pid))
        yield World(
            home=home,
            env=env,
            fake=fake,
            kubeconfig_path=kubeconfig_path,
            lag=lag,
            sampler=sampler,
            metadata_db="postgresql" if db_url else "sqlite",
        )


def clear_deferred() -> None:
    """Between variants: no trigger of the last one may reach the next variant's triggerer."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import delete, update

    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.trigger_id.is_not(None))
            .values(state="removed", trigger_id=None)
            .execution_options(synchronize_session=False)
        )
        session.execute(delete(Trigger).execution_options(synchronize_session=False))
