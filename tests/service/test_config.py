"""FinalizerConfig: defaults, mapping/env loading, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from finalizer.config import FinalizerConfig
from finalizer.exceptions import ConfigurationError


def test_defaults_point_the_ledger_at_a_sqlite_file_under_the_state_dir(tmp_path: Path) -> None:
    config = FinalizerConfig(state_dir=tmp_path)
    assert config.resolved_ledger_url == f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert config.stale_threshold == 30.0
    assert config.retry_policy("read_xcom").max_attempts == 6


def test_from_mapping_accepts_strings_as_from_an_ini_section() -> None:
    config = FinalizerConfig.from_mapping(
        {
            "ledger_url": "postgresql+asyncpg://u@h/db",
            "concurrency_per_cluster": "8",
            "ledger_deadline": "2.5",
            "retry": '{"push_xcom": {"max_attempts": 2, "deadline": 5}}',
        }
    )
    assert config.resolved_ledger_url == "postgresql+asyncpg://u@h/db"
    assert config.concurrency_per_cluster == 8
    assert config.ledger_deadline == 2.5
    policy = config.retry_policy("push_xcom")
    assert (policy.max_attempts, policy.deadline) == (2, 5)


def test_from_env_reads_prefixed_variables_and_overrides_win() -> None:
    env = {"KPO_FINALIZER_QUEUE_BOUND": "17", "KPO_FINALIZER_DRAIN_TIMEOUT": "3", "OTHER": "x"}
    config = FinalizerConfig.from_env(env, drain_timeout=1.0)
    assert config.queue_bound == 17
    assert config.drain_timeout == 1.0


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"concurrency_per_cluster": 0}, "concurrency_per_cluster"),
        ({"concurrency_per_cluster": "many"}, "concurrency_per_cluster"),
        ({"ledger_deadline": -1}, "ledger_deadline"),
        ({"bogus": 1}, "bogus"),
        ({"retry": {"nope": {}}}, "unknown retry step"),
        ({"retry": "{not json"}, "not valid JSON"),
        ({"retry": {"read_pod": {"max_attempts": 0}}}, "max_attempts"),
        ({"heartbeat_interval": 30, "stale_threshold": 30}, "must exceed heartbeat_interval"),
        ({"event_loop": "trio"}, "event_loop"),
    ],
)
def test_bad_values_raise_configuration_error_naming_the_field(
    values: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        FinalizerConfig.from_mapping(values)


def test_config_is_frozen(tmp_path: Path) -> None:
    config = FinalizerConfig(state_dir=tmp_path)
    with pytest.raises(Exception, match="frozen"):
        config.queue_bound = 3  # type: ignore[misc]


def test_unknown_retry_step_lookup_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown retry step"):
        FinalizerConfig(state_dir=tmp_path).retry_policy("nope")
