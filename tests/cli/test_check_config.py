"""``kpo-finalizer check-config``: every bad or unknown ``[kpo_finalizer]`` option, one line each.

Pure rules as tables (closest name, problems per option); the command itself as a user runs it:
a real ``airflow.cfg`` plus ``AIRFLOW__KPO_FINALIZER__*`` variables read by Airflow's own
configuration in a fresh process, the ledger tested for real on SQLite and PostgreSQL. Inside the
triggerer the same problems are logged once at ERROR and counted (``report_once``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from finalizer.metrics import METRICS
from triggers import config_check
from triggers.config_check import closest_option, find_problems, report_once

SECRET = "pa55w0rd-never-shown"


def reader(values: dict[str, str]) -> Callable[[str], str | None]:
    return values.get


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("concurency_per_clustr", "concurrency_per_cluster"),
        ("ledgerurl", "ledger_url"),
        ("enable", "enabled"),
        ("xcom_max_byte", "xcom_max_bytes"),
        ("stale_treshold", "stale_threshold"),
        ("colour", None),
    ],
)
def test_closest_known_option(name: str, closest: str | None) -> None:
    assert closest_option(name) == closest


@pytest.mark.parametrize(
    ("values", "options"),
    [
        ({}, []),
        ({"concurrency_per_cluster": "8", "enabled": "false", "state_dir": "/x"}, []),
        ({"concurrency_per_cluster": "-4"}, ["concurrency_per_cluster"]),
        ({"xcom_max_bytes": "1MB"}, ["xcom_max_bytes"]),  # read by both halves: reported once
        ({"enabled": "maybe", "fallback_to_worker": "sure"}, ["enabled", "fallback_to_worker"]),
        ({"heartbeat_interval": "40"}, ["<settings>"]),  # must stay below stale_threshold (30)
        ({"retry": "{not json"}, ["retry"]),
        ({"retry": '{"push_xcom": {"max_attempts": 0}}'}, ["retry"]),
        ({"retry": '{"pushxcom": {}}'}, ["<settings>"]),  # an unknown step: the rule names the steps
        ({"event_loop": "trio", "call_timeout": "0"}, ["call_timeout", "event_loop"]),
        (
            {"log_tail_lines": "-1", "fail_fast_message_pattern": "[a"},
            ["log_tail_lines", "fail_fast_message_pattern"],
        ),
        ({"ledger_url": f"postgresql://u:{SECRET}@h:notaport/db"}, ["ledger_url"]),
        ({"ledger_url": f"mysql://u:{SECRET}@h/db"}, ["ledger_url"]),
    ],
)
def test_value_problems_one_per_bad_option(values: dict[str, str], options: list[str]) -> None:
    problems = find_problems(reader(values), sources=dict.fromkeys(values, "airflow.cfg"))
    assert sorted(p.option for p in problems) == sorted(options)
    for problem in problems:
        assert SECRET not in problem.line()
        assert "\n" not in problem.line()
        if problem.option != "<settings>":
            assert problem.option in problem.line()


def test_unknown_options_name_the_closest_and_never_their_value() -> None:
    sources = {
        "concurency_per_clustr": "AIRFLOW__KPO_FINALIZER__CONCURENCY_PER_CLUSTR",
        "colour": "airflow.cfg",
    }
    problems = find_problems(reader({}), sources=sources)
    lines = [p.line() for p in problems]
    assert lines == [
        "[kpo_finalizer] unknown option 'colour' (set in airflow.cfg) is ignored",
        "[kpo_finalizer] unknown option 'concurency_per_clustr' "
        "(set in AIRFLOW__KPO_FINALIZER__CONCURENCY_PER_CLUSTR) is ignored; "
        "did you mean 'concurrency_per_cluster' (AIRFLOW__KPO_FINALIZER__CONCURRENCY_PER_CLUSTER)?",
    ]


# -- the command, as a user runs it -------------------------------------------------------------------


def _run(home: Path, cfg: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``kpo-finalizer check-config`` in a fresh process: Airflow reads ``home/airflow.cfg`` itself."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "airflow.cfg").write_text(cfg)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__KPO_FINALIZER__")}
    environ.update(AIRFLOW_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "-m", "finalizer.cli", "check-config", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def test_bad_and_misspelt_options_from_airflow_cfg_and_the_environment(tmp_path: Path) -> None:
    cfg = f"""
[kpo_finalizer]
concurency_per_clustr = 8
xcom_max_bytes = 1MB
ledger_url = postgresql://airflow:{SECRET}@127.0.0.1:1/kpof
ledgr_url = postgresql://airflow:{SECRET}@db/kpof
"""
    env = {
        "AIRFLOW__KPO_FINALIZER__CONCURRENCY_PER_CLUSTER": "-4",
        "AIRFLOW__KPO_FINALIZER__HEARTBEAT_INTERVL": "5",
    }
    result = _run(tmp_path / "home", cfg, env)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert SECRET not in out + result.stderr
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM ")]
    assert problems == [
        "PROBLEM [kpo_finalizer] unknown option 'concurency_per_clustr' (set in airflow.cfg) is ignored; "
        "did you mean 'concurrency_per_cluster' (AIRFLOW__KPO_FINALIZER__CONCURRENCY_PER_CLUSTER)?",
        "PROBLEM [kpo_finalizer] unknown option 'heartbeat_intervl' "
        "(set in AIRFLOW__KPO_FINALIZER__HEARTBEAT_INTERVL) is ignored; "
        "did you mean 'heartbeat_interval' (AIRFLOW__KPO_FINALIZER__HEARTBEAT_INTERVAL)?",
        "PROBLEM [kpo_finalizer] unknown option 'ledgr_url' (set in airflow.cfg) is ignored; "
        "did you mean 'ledger_url' (AIRFLOW__KPO_FINALIZER__LEDGER_URL)?",
        "PROBLEM [kpo_finalizer] concurrency_per_cluster='-4': Input should be greater than or equal to 1 "
        "(AIRFLOW__KPO_FINALIZER__CONCURRENCY_PER_CLUSTER)",
        "PROBLEM [kpo_finalizer] xcom_max_bytes='1MB': Input should be a valid integer, "
        "unable to parse string as an integer (AIRFLOW__KPO_FINALIZER__XCOM_MAX_BYTES)",
        problems[-1],
    ]
    # The ledger is still tested (its own options are valid): nothing listens on port 1.
    assert problems[-1].startswith("PROBLEM ledger: ledger connection test failed")
    assert "airflow:***@127.0.0.1:1/kpof" in problems[-1]
    assert out.splitlines()[-1] == "kpo-finalizer check-config: 6 problem(s)"


def test_a_valid_configuration_with_a_sqlite_ledger(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = f"[kpo_finalizer]\nstate_dir = {state}\nconcurrency_per_cluster = 8\nenabled = false\n"
    first = _run(tmp_path / "home", cfg, {})
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"OK ledger: no ledger file at {state / 'ledger.sqlite3'} yet" in first.stdout
    assert first.stdout.splitlines()[-1] == "kpo-finalizer check-config: [kpo_finalizer] is valid"
    assert not state.exists()  # tested, never created


def test_a_valid_configuration_with_a_postgres_ledger(
    tmp_path: Path, make_postgres_database: Callable[[str], str]
) -> None:
    url = make_postgres_database("kpof_check")
    result = _run(tmp_path / "home", "", {"AIRFLOW__KPO_FINALIZER__LEDGER_URL": url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reachable; no ledger tables yet" in result.stdout


def test_a_sqlite_ledger_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = f"[kpo_finalizer]\nstate_dir = {blocker / 'sub'}\n"
    result = _run(tmp_path / "home", cfg, {})
    assert result.returncode == 1
    assert "PROBLEM ledger:" in result.stdout
    skipped = _run(tmp_path / "home", cfg, {}, "--skip-ledger")
    assert skipped.returncode == 0, skipped.stdout


# -- inside the triggerer ----------------------------------------------------------------------------


def test_report_once_logs_every_problem_at_error_and_counts_them(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_check, "_REPORTED", False)  # a fresh triggerer process
    values = {"concurrency_per_cluster": "-4", "xcom_max_bytes": "1MB"}
    sources = {**dict.fromkeys(values, "airflow.cfg"), "concurency_per_clustr": "airflow.cfg"}
    before = {
        o: METRICS.config_problems.value(option=o)
        for o in ("concurrency_per_cluster", "concurency_per_clustr")
    }
    with caplog.at_level(logging.ERROR, logger="triggers.config_check"):
        assert report_once(reader(values), sources) == 3
        assert report_once(reader(values), sources) == 0  # once per process
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4  # three problems and the summary line
    assert "did you mean 'concurrency_per_cluster'" in errors[0]
    assert "concurrency_per_cluster='-4'" in errors[1]
    assert "xcom_max_bytes='1MB'" in errors[2]
    assert "3 problem(s)" in errors[3]
    for option, count in before.items():
        assert METRICS.config_problems.value(option=option) == count + 1


@pytest.mark.anyio
async def test_report_once_off_loop_reads_the_config_in_a_thread_not_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop runs while the check reads: a read blocked until the loop releases it completes."""
    monkeypatch.setattr(config_check, "_REPORTED", False)
    entered, release = threading.Event(), threading.Event()
    released_in_time: list[bool] = []

    def blocking_read(option: str) -> str | None:
        if not entered.is_set():
            entered.set()
            released_in_time.append(release.wait(10))  # False if the loop itself is blocked
        return {"concurrency_per_cluster": "-4"}.get(option)

    report = asyncio.create_task(config_check.report_once_off_loop(blocking_read, {}))
    assert await asyncio.wait_for(asyncio.to_thread(entered.wait, 10), 15)
    release.set()  # runs only because the read left the loop
    assert await asyncio.wait_for(report, 15) == 1
    assert released_in_time == [True]
    assert await config_check.report_once_off_loop(blocking_read, {}) == 0  # once per process


def test_check_config_without_airflow_says_where_to_run_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['airflow'] = None\n"
        "from finalizer.cli import main\n"
        "sys.exit(main(['check-config']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Airflow is not installed here" in result.stdout
    assert "Traceback" not in result.stderr


def test_every_option_the_triggerer_reads_is_known() -> None:
    """A field added to either half is read from [kpo_finalizer], so it must not be called unknown."""
    from finalizer.config import FinalizerConfig
    from triggers.config_check import KNOWN_OPTIONS
    from triggers.policy import FinalizationPolicy

    assert set(FinalizerConfig.model_fields) | set(FinalizationPolicy.model_fields) == KNOWN_OPTIONS
