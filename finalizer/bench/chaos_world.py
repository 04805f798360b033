"""The world ``bench chaos`` runs its scenarios in, built once per invocation.

Fresh PostgreSQL databases for Airflow's metadata and for the finalizer's ledger, each reached by
the triggerer through a TCP proxy (``finalizer.testing.tcp_proxy``) that the scenarios break; the
bench itself reads both directly. The fake Kubernetes API runs on a thread of this process (its
fault rules and request log are read in place), with seeded fault draws. The audit triggers
(``chaos_audit``) go in after Airflow's migrations, then the chaos DAG is synced. Everything is
undone on exit, in reverse order; the home (every triggerer's and worker's log) is removed unless
``keep``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMESPACE = "chaos"
DAG_ID = "kpo_chaos"
IMAGE = "alpine:3.22"
KUBECONFIG_ENV = "KPO_CHAOS_KUBECONFIG"
#: Plain task ids p000… (one per task of a run: success with a JSON XCom, pod deleted).
PLAIN_TASKS = 64


@dataclass(frozen=True, slots=True)
class Timing:
    """Heartbeats and thresholds of the triggerers and finalizers (short: a kill recovers quickly)."""

    ledger_deadline: float = 5.0
    triggerer_health_threshold: float = 6.0
    finalizer_stale_threshold: float = 4.0


@dataclass
class World:
    home: Path
    env: Any  # AirflowEnv
    kube: Any  # FakeKube
    kubeconfig_path: Path
    ledger_proxy: Any  # ThreadedTcpProxy
    metadb_proxy: Any
    ledger_url: str  # through the proxy
    metadb_url: str  # through the proxy
    timing: Timing
    #: Extra operator kwargs per non-plain task id (the bad-input matrix).
    special: dict[str, dict[str, Any]] = field(default_factory=dict)

    def triggerer_env(self, capacity: int = 500) -> dict[str, str]:
        t = self.timing
        return {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadb_url,
            "AIRFLOW__TRIGGERER__CAPACITY": str(capacity),
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": f"{t.triggerer_health_threshold:g}",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__KPO_FINALIZER__LEDGER_URL": self.ledger_url,
            "AIRFLOW__KPO_FINALIZER__LEDGER_DEADLINE": f"{t.ledger_deadline:g}",
            "AIRFLOW__KPO_FINALIZER__HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__KPO_FINALIZER__STALE_THRESHOLD": f"{t.finalizer_stale_threshold:g}",
            "AIRFLOW__KPO_FINALIZER__ADOPT_INTERVAL": "1",
            "AIRFLOW__KPO_FINALIZER__DRAIN_TIMEOUT": "5",
            "AIRFLOW__KPO_FINALIZER__STATE_DIR": str(self.home / "kpo-finalizer"),
        }


def dag_source(special: Mapping[str, Mapping[str, Any]]) -> str:
    """The chaos DAG: ``PLAIN_TASKS`` plain tasks and one task per special case, with its kwargs."""
    return textwrap.dedent(
        f"""
        \"\"\"bench chaos: plain tasks and the bad-input matrix.\"\"\"
        import os
        from datetime import datetime

        from airflow.sdk import DAG
        from triggers.operator import FinalizingKubernetesPodOperator as Op

        COMMON = dict(
            namespace={NAMESPACE!r}, image={IMAGE!r}, deferrable=True, do_xcom_push=True,
            kubernetes_conn_id=None, config_file=os.environ.get({KUBECONFIG_ENV!r}),
        )
        with DAG({DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
            for i in range({PLAIN_TASKS}):
                Op(task_id=f"p{{i:03d}}", name=f"p{{i:03d}}", **COMMON)
            for task_id, kwargs in {dict(special)!r}.items():
                Op(task_id=task_id, name=task_id, **COMMON, **kwargs)
        """
    )


def _through(url: str, proxy: Any, driver: str) -> str:
    """``url`` (postgresql://user@host:port/db) with the proxy's host:port and the given driver."""
    rest = url.split("://", 1)[1]
    user, _, tail = rest.partition("@")
    database = tail.split("/", 1)[1]
    return f"{driver}://{user}@{proxy.host}:{proxy.port}/{database}"


@contextmanager
def world(
    special: Mapping[str, Mapping[str, Any]], *, seed: int, timing: Timing, keep: bool, say: Any = print
) -> Iterator[World]:
    from finalizer.bench.chaos_audit import install
    from finalizer.demo.stack import drop_database, fresh_postgres_url
    from finalizer.testing.airflow_env import AirflowEnv
    from finalizer.testing.fake_kube import FakeKube
    from finalizer.testing.tcp_proxy import ThreadedTcpProxy

    with ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="kpo-bench-chaos-"))
        if keep:
            stack.callback(say, f"kept {home}")
        else:
            stack.callback(shutil.rmtree, home, True)
        metadb, ledger = fresh_postgres_url(), fresh_postgres_url()
        if metadb is None or ledger is None:
            raise RuntimeError(
                "bench chaos needs PostgreSQL (metadata DB and ledger): none answered at "
                + os.environ.get("KPO_FINALIZER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
            )
        stack.callback(drop_database, metadb)
        stack.callback(drop_database, ledger)
        host, port = metadb.split("@", 1)[1].split("/", 1)[0].split(":")
        metadb_proxy = stack.enter_context(ThreadedTcpProxy(host, int(port)))
        ledger_proxy = stack.enter_context(ThreadedTcpProxy(host, int(port)))
        kube = stack.enter_context(FakeKube.in_thread(bookmark_interval=5.0))
        kube.faults.seed(seed)
        kubeconfig_path = home / "kubeconfig.json"
        kubeconfig_path.write_text(json.dumps(kube.kubeconfig))
        os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
        os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
        env = AirflowEnv.prepare(
            home / "airflow",
            metadb,
            extra_env={
                "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps({"conn_type": "kubernetes"}),
                KUBECONFIG_ENV: str(kubeconfig_path),
            },
        )
        say("metadata DB and ledger: PostgreSQL (each through a TCP proxy); migrating…")
        env.migrate()
        install()
        env.write_dag("kpo_chaos.py", dag_source(special))
        env.sync_dags()
        yield World(
            home=home,
            env=env,
            kube=kube,
            kubeconfig_path=kubeconfig_path,
            ledger_proxy=ledger_proxy,
            metadb_proxy=metadb_proxy,
            ledger_url=_through(ledger, ledger_proxy, "postgresql+asyncpg"),
            metadb_url=_through(env.db_url, metadb_proxy, env.db_url.split("://", 1)[0]),
            timing=timing,
            special={k: dict(v) for k, v in special.items()},
        )
