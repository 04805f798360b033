"""A real Airflow 3.3 metadata DB and Task Execution API app for tests, the demo and benchmarks.

Airflow reads its configuration when ``airflow`` is first imported, so the environment has to
be in place before that. ``AirflowEnv.prepare(home, db_url)`` builds the environment (``AIRFLOW_HOME``,
the metadata DB URL, a DAGs folder, a JWT secret, a Fernet key, no example DAGs), writes it into
``os.environ`` and returns an ``AirflowEnv`` whose ``.env`` can be handed to a subprocess (e.g.
``airflow triggerer``) so both processes share one database. Everything else imports Airflow lazily.

Typical use::

    env = AirflowEnv.prepare(tmp_path / "airflow")          # SQLite file under home
    env.migrate()                                           # fresh schema (seconds, even on SQLite)
    env.add_dag("kpo.py", DAG_SOURCE)                       # write + sync to DB, no DAG processor
    run = env.create_run("my_dag")                          # DagRun + TIs, state RUNNING
    ti = run.ti("my_task")
    env.set_ti_state(ti.id, "deferred")
    token = env.mint_token(ti.id)
    async with env.execution_api_app() as app:              # real app, lifespan running
        transport = httpx.ASGITransport(app=app)
        ...
    env.get_xcom(run.dag_id, run.run_id, "my_task", "return_value")

For an ``airflow triggerer`` sharing the DB: start it with ``env=env.env`` (plus PATH), then
``env.defer_ti(ti.id, classpath, kwargs)`` creates the Trigger row and defers the TI, as a worker
would; poll ``env.get_ti``/``env.find_ti`` (a retried TI gets a new id) for the outcome. A child
process rebuilds the handle with ``AirflowEnv.from_environ()``. PostgreSQL: pass any
``postgresql://`` URL of an empty database; the harness pins the psycopg2 driver.

One process can switch to another database: calling ``prepare`` again (or ``activate``) re-points
Airflow's ORM (``settings.configure_vars`` + ``settings.reconfigure_orm``). Apps built before the
switch must not be used afterwards. SQLite must be a file (not ``:memory:``) when another process
shares it. No pytest in here: this module is shipped and used outside test sessions too.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api_client.models import API_VERSION

__all__ = ["AirflowEnv", "RunInfo", "TIInfo"]

#: Execution API version this harness and ``api_client`` are written against (Airflow 3.3.2).
EXECUTION_API_VERSION = API_VERSION


@dataclass(frozen=True, slots=True)
class TIInfo:
    """A task instance as read from Airflow's ``task_instance`` table (plain values, no ORM)."""

    id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str | None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A dag run created by ``AirflowEnv.create_run`` and its task instances."""

    dag_id: str
    run_id: str
    tis: tuple[TIInfo, ...]

    def ti(self, task_id: str, map_index: int = -1) -> TIInfo:
        """The TI for ``task_id`` (and ``map_index``); ``KeyError`` if the run has none."""
        for ti in self.tis:
            if ti.task_id == task_id and ti.map_index == map_index:
                return ti
        raise KeyError(f"no task instance {task_id!r} map_index={map_index} in run {self.run_id!r}")


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _normalise_db_url(url: str) -> str:
    """Pin the psycopg2 driver: SQLAlchemy 2.1 maps bare ``postgresql://`` to psycopg 3 (not installed)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


@dataclass(slots=True)
class AirflowEnv:
    """One Airflow home + metadata DB. Create with ``prepare``; see the module docstring."""

    home: Path
    db_url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dags_folder(self) -> Path:
        return self.home / "dags"

    # -- environment -----------------------------------------------------------------------------

    @classmethod
    def prepare(
        cls,
        home: Path | str,
        db_url: str | None = None,
        *,
        jwt_secret: str | None = None,
        fernet_key: str | None = None,
        execution_api_server_url: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> AirflowEnv:
        """Create the home and DAGs folder, set the Airflow env in ``os.environ``, return the env.

        ``db_url`` defaults to a SQLite file in ``home``; a bare ``postgresql://`` URL is pinned to
        psycopg2 (sync); Airflow derives the asyncpg URL for async access itself.
        Secrets are generated when not given (the JWT secret must be at least 64 bytes).
        If Airflow is already imported in this process, its ORM is re-pointed at ``db_url``.
        """
        home = Path(home).resolve()
        home.mkdir(parents=True, exist_ok=True)
        url = _normalise_db_url(db_url) if db_url else _sqlite_url(home / "airflow.db")
        if url.startswith("sqlite") and (":memory:" in url or not url.split("://", 1)[1].strip("/")):
            raise ValueError(f"use a SQLite file, not an in-memory DB ({url}): other processes share it")
        self = cls(home=home, db_url=url)
        self.dags_folder.mkdir(exist_ok=True)
        env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret or secrets.token_urlsafe(64),
            "AIRFLOW__CORE__FERNET_KEY": fernet_key or base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
        if len(env["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) < 64:
            raise ValueError("jwt_secret must be at least 64 bytes")
        if execution_api_server_url:
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = execution_api_server_url
        env.update(extra_env or {})
        self.env = env
        self.activate()
        return self

    @classmethod
    def from_environ(cls) -> AirflowEnv:
        """The env a parent prepared, in a child process started with ``env.env`` (demo, helpers)."""
        keys = ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        missing = [k for k in keys if not os.environ.get(k)]
        if missing:
            raise RuntimeError(f"AirflowEnv.from_environ: {', '.join(missing)} not set")
        env = {k: v for k, v in os.environ.items() if k == "AIRFLOW_HOME" or k.startswith("AIRFLOW__")}
        return cls(home=Path(env["AIRFLOW_HOME"]), db_url=env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env=env)

    def activate(self) -> None:
        """Write ``self.env`` into ``os.environ``; if Airflow is imported, re-point its ORM here."""
        os.environ.update(self.env)
        if "airflow.settings" in sys.modules:
            from airflow import settings

            settings.configure_vars()
            settings.reconfigure_orm()
        if "airflow.models.crypto" in sys.modules:
            # get_fernet() is @cache'd: drop the previous env's key.
            sys.modules["airflow.models.crypto"].get_fernet.cache_clear()

    # -- schema and DAGs ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Drop and recreate Airflow's schema (``resetdb``): an empty, fully migrated DB."""
        from airflow.utils.db import resetdb

        resetdb(skip_init=False)

    def write_dag(self, filename: str, source: str) -> Path:
        """Write a DAG file into the DAGs folder (dedented); does not sync it."""
        path = self.dags_folder / filename
        path.write_text(textwrap.dedent(source))
        return path

    def sync_dags(self) -> list[str]:
        """Parse the DAGs folder and write DagModel/SerializedDagModel rows, as the DAG processor would.

        Returns the DAG ids found. Raises ``RuntimeError`` naming the files that failed to import.
        """
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
        from airflow.utils.session import create_session

        manager = DagBundlesManager()
        with create_session() as session:
            manager.sync_bundles_to_db(session=session)
        dag_ids: list[str] = []
        for bundle in manager.get_all_dag_bundles():
            bundle.initialize()
            bag = BundleDagBag(bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
            if bag.import_errors:
                raise RuntimeError(f"DAG import errors: {dict(bag.import_errors)}")
            with create_session() as session:
                sync_bag_to_db(bag, bundle.name, bundle.version, session=session)
            dag_ids.extend(bag.dag_ids)
        return dag_ids

    def add_dag(self, filename: str, source: str) -> list[str]:
        """``write_dag`` then ``sync_dags``; returns the DAG ids now in the DB."""
        self.write_dag(filename, source)
        return self.sync_dags()

    # -- runs and task instances ---------------------------------------------------------------

    def create_run(
        self,
        dag_id: str,
        run_id: str | None = None,
        *,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | None = None,
    ) -> RunInfo:
        """Create a manual RUNNING dag run (and its TIs) from the serialized DAG, no scheduler."""
        from airflow.models.serialized_dag import SerializedDagModel
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType

        run_id = run_id or f"manual__{uuid.uuid4().hex[:12]}"
        with create_session() as session:
            sdm = SerializedDagModel.get(dag_id, session=session)
            if sdm is None:
                raise KeyError(f"DAG {dag_id!r} is not in the DB; add_dag/sync_dags first")
            now = datetime.now(UTC)
            dag_run = sdm.dag.create_dagrun(
                run_id=run_id,
                logical_date=logical_date,
                run_after=now,
                conf=dict(conf or {}),
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.TEST,
                state=DagRunState.RUNNING,
                start_date=now,
                session=session,
            )
            session.flush()
            tis = tuple(_ti_info(ti) for ti in dag_run.get_task_instances(session=session))
        return RunInfo(dag_id=dag_id, run_id=run_id, tis=tis)

    def set_ti_state(self, ti_id: str, state: str | None, **columns: Any) -> TIInfo:
        """Set a TI's state (and any other ``task_instance`` columns given), return it re-read.

        For ``running``/``deferred`` the harness also fills what the scheduler and worker would have
        set (``try_number`` ≥ 1, ``hostname``, ``pid``, ``start_date``) unless given.
        """
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            ti = session.get(TaskInstance, uuid.UUID(str(ti_id)))
            if ti is None:
                raise KeyError(f"no task instance {ti_id}")
            ti.state = state
            if state in ("running", "deferred"):
                columns.setdefault("try_number", max(1, int(ti.try_number or 0)))
                columns.setdefault("hostname", "kpo-finalizer-test")
                columns.setdefault("pid", os.getpid())
                columns.setdefault("start_date", ti.start_date or datetime.now(UTC))
            for name, value in columns.items():
                setattr(ti, name, value)
            session.flush()
            return _ti_info(ti)

    def defer_ti(
        self,
        ti_id: str,
        classpath: str,
        kwargs: Mapping[str, Any],
        *,
        next_method: str = "trigger_reentry",
        next_kwargs: Mapping[str, Any] | None = None,
    ) -> int:
        """Defer a TI to a new Trigger row (as ``TaskInstance.defer_task`` does); return the trigger id.

        An ``airflow triggerer`` sharing this DB picks the trigger up. ``kwargs`` are the trigger's
        serialized kwargs (``trigger.serialize()[1]``); they are stored encrypted, as Airflow does.
        """
        from airflow.models.trigger import Trigger
        from airflow.utils.session import create_session

        with create_session() as session:
            trigger = Trigger(classpath=classpath, kwargs=dict(kwargs))
            session.add(trigger)
            session.flush()
            trigger_id = int(trigger.id)
        self.set_ti_state(
            ti_id,
            "deferred",
            trigger_id=trigger_id,
            next_method=next_method,
            next_kwargs=dict(next_kwargs or {}),
        )
        return trigger_id

    def get_ti(self, ti_id: str) -> TIInfo:
        """Re-read one TI from the DB."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            ti = session.get(TaskInstance, uuid.UUID(str(ti_id)))
            if ti is None:
                raise KeyError(f"no task instance {ti_id}")
            return _ti_info(ti)

    def find_ti(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TIInfo:
        """The TI by coordinates. Use this after a retry: Airflow gives the new try a new TI id."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.run_id == run_id,
                    TaskInstance.task_id == task_id,
                    TaskInstance.map_index == map_index,
                )
            ).one_or_none()
            if ti is None:
                raise KeyError(f"no task instance {dag_id}/{run_id}/{task_id}[{map_index}]")
            return _ti_info(ti)

    # -- XCom and task map -----------------------------------------------------------------------

    def get_xcom(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        """The XCom value as Airflow's own model deserializes it; ``KeyError`` when absent."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.scalars(
                XComModel.get_many(
                    key=key, dag_ids=dag_id, run_id=run_id, task_ids=task_id, map_indexes=map_index
                )
            ).first()
            if row is None:
                raise KeyError(f"no XCom {dag_id}/{run_id}/{task_id}/{key}[{map_index}]")
            return XComModel.deserialize_value(row)

    def get_xcom_raw(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        """The XCom row's stored ``value`` column exactly as in the DB (to check clean JSON)."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            stmt = select(XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == map_index,
            )
            rows = session.execute(stmt).all()
            if not rows:
                raise KeyError(f"no XCom {dag_id}/{run_id}/{task_id}/{key}[{map_index}]")
            return rows[0][0]

    def get_task_map_length(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> int | None:
        """``task_map.length`` for the TI (written when XCom is pushed with mapped_length), or None."""
        from airflow.models.taskmap import TaskMap
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.get(
                TaskMap, {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
            )
            return None if row is None else int(row.length)

    # -- Execution API -------------------------------------------------------------------------

    def mint_token(self, ti_id: str, *, valid_for: float | None = None, scope: str | None = None) -> str:
        """A Task Execution API JWT for ``ti_id`` as the scheduler would issue it.

        ``valid_for`` in seconds (negative → already expired); default ``[execution_api]
        jwt_expiration_time``. ``scope`` e.g. ``"workload"``; default none (= execution).
        """
        from airflow.api_fastapi.execution_api.app import _jwt_generator

        extras: dict[str, Any] = {"sub": str(ti_id)}
        if scope is not None:
            extras["scope"] = scope
        token: str = _jwt_generator().generate(extras=extras, valid_for=valid_for)
        return token

    @contextlib.asynccontextmanager
    async def execution_api_app(self) -> AsyncIterator[Any]:
        """The real Task Execution API FastAPI app, with its DAG bag set and lifespan running.

        Serve it with ``httpx.ASGITransport(app=app)`` (base URL without ``/execution``), or mount it.
        Its first request costs seconds (cold start): share one app per test session.
        """
        from airflow.api_fastapi.common.dagbag import create_dag_bag
        from airflow.api_fastapi.execution_api.app import create_task_execution_api_app

        app = create_task_execution_api_app()
        app.state.dag_bag = create_dag_bag()
        async with app.router.lifespan_context(app):
            yield app


def _ti_info(ti: Any) -> TIInfo:
    return TIInfo(
        id=str(ti.id),
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=int(ti.map_index),
        try_number=int(ti.try_number or 0),
        state=None if ti.state is None else str(ti.state),
    )
