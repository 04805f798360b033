"""``kpo-finalizer status``: the pure report rules, and the command on real SQLite and PostgreSQL ledgers.

The ledger is written by the real ``Ledger`` (what a finalizer does: register, submit, advance,
unregister on drain); the command reads it read-only. Payloads and specs hold a marker string
that must never appear in the output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from finalizer.cli import main
from finalizer.jobs import ClusterRef, JobSpec, Outcome, OutcomeKind, PodRef, Step, TaskInstanceRef
from finalizer.ledger import Ledger
from finalizer.ledger.summary import InstanceRow, JobRow, LedgerRows, summarize
from finalizer.status_command import human_age
from tests.support.ledger import backdate

SECRET = "s3cr3t-payload-never-shown"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _job(key: str, owner: str | None, step: int = 0, **extra: Any) -> JobRow:
    return JobRow(
        key=key,
        dag_id="dag",
        task_id=key,
        run_id="r1",
        map_index=-1,
        try_number=1,
        namespace="ns",
        pod_name=f"pod-{key}",
        step=step,
        owner=owner,
        created_at=T0,
        updated_at=T0,
        **extra,
    )


def _rows(**overrides: Any) -> LedgerRows:
    values: dict[str, Any] = {
        "url": "sqlite:///x",
        "now": T0 + timedelta(seconds=100),
        "schema_version": 1,
        "instances": [],
        "step_counts": [],
        "in_flight_by_owner": [],
        "oldest_in_flight": None,
        "parked": [],
        "handed_over": None,
        "failures": [],
    }
    values.update(overrides)
    return LedgerRows(**values)


def _instance(id: str, heartbeat_age: float, started: float = 0) -> InstanceRow:
    now = T0 + timedelta(seconds=100)
    return InstanceRow(id, "host", 1, T0 + timedelta(seconds=started), now - timedelta(seconds=heartbeat_age))


@pytest.mark.parametrize(
    ("heartbeat_ages", "held", "expected"),
    [
        # (alive flags), (live, orphaned, parked)
        ({"a": 1.0}, {"a": 3}, ((True,), (3, 0, 0))),
        ({"a": 30.0}, {"a": 1}, ((True,), (1, 0, 0))),  # exactly the threshold: still alive
        ({"a": 30.5}, {"a": 2}, ((False,), (0, 2, 0))),  # older: dead, its jobs wait for adoption
        ({"a": 1.0, "b": 99.0}, {"a": 1, "b": 2, None: 4, "gone": 5}, ((True, False), (1, 2, 9))),
        ({}, {None: 1}, ((), (0, 0, 1))),  # released (no owner): parked
        ({}, {}, ((), (0, 0, 0))),
    ],
)
def test_who_holds_each_unfinished_job(
    heartbeat_ages: dict[str, float],
    held: dict[str | None, int],
    expected: tuple[tuple[bool, ...], tuple[int, ...]],
) -> None:
    rows = _rows(
        instances=[_instance(i, age, started=n) for n, (i, age) in enumerate(heartbeat_ages.items())],
        in_flight_by_owner=list(held.items()),
    )
    report = summarize(rows, stale_threshold=30.0)
    assert tuple(i.alive for i in report.instances) == expected[0]
    assert (report.in_flight_live, report.in_flight_orphaned, report.parked) == expected[1]
    assert report.in_flight == sum(held.values())


def test_step_counts_in_pipeline_order() -> None:
    rows = _rows(
        step_counts=[
            (100, "success", 5),
            (0, None, 2),
            (100, "failed", 1),
            (20, "success", 1),
            (77, None, 1),
        ],
    )
    report = summarize(rows, stale_threshold=30.0)
    assert [(c.step, c.outcome, c.count) for c in report.jobs] == [
        ("REGISTERED", None, 2),
        ("XCOM_PERSISTED", "success", 1),
        ("77", None, 1),  # a step this code does not know (a newer ledger): its number, in order
        ("DONE", "failed", 1),
        ("DONE", "success", 5),
    ]
    assert report.total_jobs == 10


def test_job_lines_name_the_task_pod_step_and_age() -> None:
    mapped = dataclasses.replace(_job("t", "owner", step=20), map_index=3)
    report = summarize(_rows(oldest_in_flight=mapped), stale_threshold=30.0)
    assert report.oldest_in_flight is not None
    assert report.oldest_in_flight.task == "dag.t[3] run r1 try 1"
    assert report.oldest_in_flight.pod == "ns/pod-t"
    assert report.oldest_in_flight.step == "XCOM_PERSISTED"
    assert report.oldest_in_flight.age == 100.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0s"),
        (4.24, "4.2s"),
        (59.9, "59.9s"),
        (60, "1m00s"),
        (185, "3m05s"),
        (7620, "2h07m"),
        (273600, "3d04h"),
    ],
)
def test_human_age(seconds: float, text: str) -> None:
    assert human_age(seconds) == text


# -- against real ledgers ---------------------------------------------------------------------------


def _spec(n: int) -> JobSpec:
    return JobSpec(
        ti=TaskInstanceRef(id=f"ti-{n}", dag_id="etl", task_id=f"load_{n}", run_id="manual_1"),
        # the spec can carry cluster credentials: never read by status
        cluster=ClusterRef(config_dict={"token": SECRET}),
        pod=PodRef(namespace="jobs", name=f"load-{n}", uid=f"uid-{n}"),
    )


async def _populate(url: str) -> None:
    """Two live jobs on a live instance, one on a dead one, one parked by a drain, two done, one
    handed to the worker."""
    ledger = await Ledger.connect(url)
    try:
        live = await ledger.register_instance("live-host", 101)
        dead = await ledger.register_instance("dead-host", 202)
        drained = await ledger.register_instance("drained-host", 303)
        first = await ledger.submit(_spec(1), live)
        await ledger.advance(await ledger.submit(_spec(2), live), Step.COMPLETION_SEEN)
        await ledger.submit(_spec(3), dead)
        await ledger.submit(_spec(4), drained)
        ok = await ledger.submit(_spec(5), live)
        ok = await ledger.advance(ok, Step.XCOM_PERSISTED, xcom={"token": SECRET})
        await ledger.advance(ok, Step.DONE, outcome=Outcome(kind=OutcomeKind.SUCCESS, reason="exit code 0"))
        bad = await ledger.submit(_spec(6), live)
        failed = Outcome(
            kind=OutcomeKind.FAILED,
            reason="exit code 3: config missing",
            log_tail=f"log {SECRET}",
            exit_code=3,
        )
        bad = await ledger.advance(bad, Step.XCOM_PERSISTED, xcom=SECRET, outcome=failed)
        await ledger.advance(bad, Step.DONE)
        await ledger.submit(_spec(7), live)
        assert (
            await ledger.hand_over(_spec(7).key, "fallback_to_worker: the worker ends the task") is not None
        )
        await backdate(ledger, dead, 3600)
        await ledger.unregister(drained)  # what a drain does: its jobs are adoptable at once
        assert first.owner == live
    finally:
        await ledger.aclose()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty ledger location: a SQLite file not yet created, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"
    make: Callable[[str], str] = request.getfixturevalue("make_postgres_database")
    return make("kpof_status")


@pytest.fixture
def populated(ledger_url: str) -> str:
    if ledger_url.startswith("sqlite"):
        Path(ledger_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    anyio.run(_populate, ledger_url)
    return ledger_url


def _database_dump(url: str) -> list[Any]:
    """Every row of both tables, to prove the command wrote nothing."""

    async def read() -> list[Any]:
        import sqlalchemy as sa

        from finalizer.ledger.schema import instances, jobs

        ledger = await Ledger.connect(url)
        try:
            return await ledger.run_sql(
                lambda conn: [
                    *conn.execute(sa.select(instances).order_by(instances.c.id)).all(),
                    *conn.execute(sa.select(jobs).order_by(jobs.c.key)).all(),
                ]
            )
        finally:
            await ledger.aclose()

    return anyio.run(read)


def test_status_json_reports_a_real_ledger_and_writes_nothing(
    populated: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _database_dump(populated)
    assert main(["status", "--ledger-url", populated, "--json"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    report = json.loads(out)
    hosts = {i["host"]: i for i in report["instances"]}
    assert set(hosts) == {"live-host", "dead-host"}  # the drained one unregistered
    assert hosts["live-host"]["alive"]
    assert hosts["live-host"]["jobs_in_flight"] == 2
    assert not hosts["dead-host"]["alive"]
    assert hosts["dead-host"]["heartbeat_age"] >= 3599
    assert (
        report["in_flight"],
        report["in_flight_live"],
        report["in_flight_orphaned"],
        report["parked"],
    ) == (
        4,
        2,
        1,
        1,
    )
    counts = {(c["step"], c["outcome"]): c["count"] for c in report["jobs"]}
    assert counts == {
        ("REGISTERED", None): 3,
        ("REGISTERED", "handed_over"): 1,  # not in flight, not a failure: the worker's now
        ("COMPLETION_SEEN", None): 1,
        ("DONE", "failed"): 1,
        ("DONE", "success"): 1,
    }
    assert report["oldest_in_flight"]["task"] == "etl.load_1 run manual_1 try 1"
    assert [j["pod"] for j in report["parked_jobs"]] == ["jobs/load-4"]
    assert [(f["pod"], f["outcome"], f["reason"]) for f in report["failures"]] == [
        ("jobs/load-6", "failed", "exit code 3: config missing")
    ]
    assert report["handed_over"] == 1
    assert report["stale_threshold"] == 30.0
    assert _database_dump(populated) == before


def test_status_text_reads_the_configured_ledger(
    populated: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --ledger-url: the ledger and the stale threshold the triggerer would use ([kpo_finalizer])."""
    if populated.startswith("sqlite"):
        monkeypatch.setenv(
            "AIRFLOW__KPO_FINALIZER__STATE_DIR", str(Path(populated.removeprefix("sqlite:///")).parent)
        )
        monkeypatch.delenv("AIRFLOW__KPO_FINALIZER__LEDGER_URL", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LEDGER_URL", populated)
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__HEARTBEAT_INTERVAL", "1000")
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__STALE_THRESHOLD", "7200")  # the dead one is 1 h old
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    assert "alive = heartbeat within 7200s" in out
    assert "DEAD" not in out
    assert (
        "Jobs: 7 in total, 4 in flight (3 on live instances, 0 awaiting adoption from dead ones, 1 parked)"
        in out
    )
    assert "Oldest in flight: etl.load_1 run manual_1 try 1, pod jobs/load-1, step REGISTERED" in out
    assert "Parked by a drain: 1\n  etl.load_4 run manual_1 try 1, pod jobs/load-4" in out
    assert "Handed to the worker: 1\n" in out
    assert "etl.load_6 run manual_1 try 1, pod jobs/load-6: failed: exit code 3: config missing" in out


def test_status_of_an_empty_place_says_so_and_creates_nothing(
    ledger_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--ledger-url", ledger_url]) == 3
    err = capsys.readouterr().err
    assert "No finalizer has written there yet" in err
    if ledger_url.startswith("sqlite"):
        assert "no ledger file at" in err
        assert not Path(ledger_url.removeprefix("sqlite:///")).parent.exists()
    else:
        assert "holds no kpo-finalizer ledger" in err
        assert main(["status", "--ledger-url", ledger_url]) == 3  # still no tables: never migrated


def test_status_state_dir_and_bad_ledgers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(tmp_path / "nowhere")]) == 3
    assert f"no ledger file at {tmp_path / 'nowhere' / 'ledger.sqlite3'}" in capsys.readouterr().err
    assert main(["status", "--ledger-url", "mysql://u:pw@h/db"]) == 4
    assert "must be SQLite or PostgreSQL" in capsys.readouterr().err
    assert main(["status", "--ledger-url", "postgresql://u:topsecret@127.0.0.1:1/db"]) == 4
    err = capsys.readouterr().err
    assert "topsecret" not in err
    assert "***" in err
    (tmp_path / "junk.sqlite3").write_text("not a database")
    assert main(["status", "--ledger-url", f"sqlite:///{tmp_path / 'junk.sqlite3'}"]) == 4
    assert "kpo-finalizer status:" in capsys.readouterr().err


def test_status_refuses_bad_config_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__STALE_THRESHOLD", "soon")
    assert main(["status", "--ledger-url", "sqlite:////nonexistent/x.sqlite3"]) == 2
    assert "stale_threshold='soon'" in capsys.readouterr().err


def test_status_watch_prints_a_report_per_interval(populated: str, tmp_path: Path) -> None:
    """The real command line: --watch --json is JSON Lines, one report per interval, until stopped."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finalizer.cli",
            "status",
            "--ledger-url",
            populated,
            "--json",
            "--watch",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        reports = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(30)
    assert [r["in_flight"] for r in reports] == [4, 4, 4]
    assert reports[0]["at"] < reports[1]["at"] < reports[2]["at"]


def _without(modules: list[str], argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real command line in a process where ``modules`` cannot be imported (an install without them)."""
    code = (
        "import sys\n"
        f"for name in {modules!r}: sys.modules[name] = None\n"
        "from finalizer.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__KPO", "KPO_FINALIZER_"))}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**environ, **env}, timeout=120
    )


def test_status_without_airflow_reads_the_standalone_settings(tmp_path: Path) -> None:
    """No ``airflow`` extra: the defaults come from ``KPO_FINALIZER_*``, as a standalone finalizer's do."""
    anyio.run(_populate, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    env = {"KPO_FINALIZER_STATE_DIR": str(tmp_path), "KPO_FINALIZER_STALE_THRESHOLD": "7200"}
    result = _without(["airflow", "airflow.configuration"], ["status"], env)
    assert result.returncode == 0, result.stderr
    assert "alive = heartbeat within 7200s" in result.stdout


def test_status_of_a_postgres_ledger_without_asyncpg_says_what_to_install(tmp_path: Path) -> None:
    result = _without(["asyncpg"], ["status", "--ledger-url", "postgresql://u:pw@127.0.0.1:1/db"], {})
    assert result.returncode == 4
    assert "pip install 'kpo-finalizer[postgres]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--watch", "0"], "must be more than 0"),
        (["status", "--watch", "soon"], "expected a number"),
        (["status", "--ledger-url", "sqlite:///x", "--state-dir", "d"], "not allowed with argument"),
    ],
)
def test_bad_arguments_are_refused(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_watch_keeps_going_when_a_read_fails(tmp_path: Path) -> None:
    """A ledger that is not there (yet) is said on every round; the watch goes on until stopped."""
    missing = tmp_path / "later" / "ledger.sqlite3"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finalizer.cli",
            "status",
            "--ledger-url",
            f"sqlite:///{missing}",
            "--watch",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")},
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while len(lines) < 2:  # ours, not whatever else the process warns about on stderr
            line = proc.stderr.readline()
            assert line, "the watch ended"
            if line.startswith("kpo-finalizer status:"):
                lines.append(line)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
    assert all(f"no ledger file at {missing}" in line for line in lines), lines
    assert not missing.parent.exists()


def test_airflow_db_count_when_airflow_s_database_cannot_be_read(populated: str, tmp_path: Path) -> None:
    """--airflow-db is extra: an unreadable metadata database is said on its line, the report stands.
    (The count itself, against a real triggerer's database: tests/triggers/test_e2e_rollback.py.)"""

    def status(airflow_db: str, *extra: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
        }
        argv = ["status", "--ledger-url", populated, "--airflow-db", *extra]
        return subprocess.run(
            [sys.executable, "-m", "finalizer.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    unreachable = status(f"postgresql://airflow:{SECRET}@127.0.0.1:1/airflow")
    assert unreachable.returncode == 0, unreachable.stderr
    line = unreachable.stdout.splitlines()[-1]
    assert line.startswith(
        "kpo-finalizer trigger rows in Airflow's trigger table: unknown (Airflow's database"
    )
    assert "airflow:***@127.0.0.1:1" in line
    assert SECRET not in unreachable.stdout + unreachable.stderr
    not_airflow = status(f"sqlite:///{tmp_path / 'not-airflow.db'}", "--json")
    assert not_airflow.returncode == 0, not_airflow.stderr
    report = json.loads(not_airflow.stdout)
    assert report["finalizing_triggers"] is None
    assert "no such table: trigger" in report["finalizing_triggers_error"]


def test_the_postgres_connection_status_reads_through_refuses_writes(
    make_postgres_database: Callable[[str], str],
) -> None:
    """Belt and braces: status only SELECTs, and its PostgreSQL session could not write anyway."""
    import sqlalchemy as sa

    from finalizer.ledger.readonly import _postgres_engine, parse_ledger_url

    url = make_postgres_database("kpof_ro")

    async def try_write() -> str:
        engine = _postgres_engine(parse_ledger_url(url), 5.0)
        try:
            async with engine.connect() as conn:
                setting = (await conn.execute(sa.text("SHOW default_transaction_read_only"))).scalar_one()
                with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                    await conn.execute(sa.text("CREATE TABLE status_must_not_write (x int)"))
                return str(setting)
        finally:
            await engine.dispose()

    assert anyio.run(try_write) == "on"
