"""FinalizationPolicy: validation, configuration defaults, resolution to FinishSettings."""

from __future__ import annotations

from typing import Any

import pytest

from finalizer.exceptions import ConfigurationError
from finalizer.jobs import FinishSettings
from triggers.policy import (
    FinalizationPolicy,
    config_defaults,
    finalization_switched_on,
    policy_config_problems,
    worker_outcomes,
)
from triggers.settings import airflow_option


def reader(values: dict[str, str]):  # type: ignore[no-untyped-def]
    return values.get


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"xcom_max_bytes": 0}, "xcom_max_bytes=0"),
        ({"log_tail_lines": -1}, "log_tail_lines=-1"),
        ({"fail_fast_message_pattern": "(unclosed"}, "not a valid regular expression"),
        ({"enabled": "maybe"}, "enabled='maybe'"),
        ({"no_such_option": 1}, "no_such_option"),
        ({"fail_fast_exit_codes": ["x"]}, "fail_fast_exit_codes.0='x'"),
    ],
)
def test_bad_values_raise_configuration_error_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        FinalizationPolicy.build(data)
    assert message in str(info.value)


def test_coerce_rejects_other_types() -> None:
    with pytest.raises(ConfigurationError, match="not int"):
        FinalizationPolicy.coerce(5)  # type: ignore[arg-type]


def test_serialize_keeps_only_explicit_fields_and_round_trips() -> None:
    policy = FinalizationPolicy(enabled=True, fail_fast_exit_codes=(3, 4), fail_fast_message_pattern="OOM")
    data = policy.serialize()
    assert data == {"enabled": True, "fail_fast_exit_codes": [3, 4], "fail_fast_message_pattern": "OOM"}
    assert FinalizationPolicy.coerce(data) == policy
    assert FinalizationPolicy.coerce(data).serialize() == data
    assert FinalizationPolicy().serialize() == {}


@pytest.mark.parametrize(
    ("config", "explicit", "expected"),
    [
        ({}, {}, {"enabled": None, "xcom_max_bytes": None}),
        # enabled is the switch for new tasks (read where they defer), not a per-task default:
        # a trigger already deferred to ours finishes in the triggerer with enabled = false.
        ({"enabled": "False"}, {}, {"enabled": None}),
        ({"enabled": "false"}, {"enabled": False}, {"enabled": False}),  # the task's own policy
        ({"xcom_max_bytes": " 2048 "}, {}, {"xcom_max_bytes": 2048}),
        ({"fail_fast_exit_codes": "3, 4,"}, {}, {"fail_fast_exit_codes": (3, 4)}),
        ({"fail_fast_waiting_reasons": "A,B"}, {}, {"fail_fast_waiting_reasons": ("A", "B")}),
        ({"fallback_to_worker": "yes"}, {}, {"fallback_to_worker": True}),
    ],
)
def test_resolve_fills_unset_fields_from_config(
    config: dict[str, str], explicit: dict[str, Any], expected: dict[str, Any]
) -> None:
    resolved = FinalizationPolicy.build(explicit).resolve(reader(config))
    for key, value in expected.items():
        assert getattr(resolved, key) == value


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"xcom_max_bytes": "1MB"}, "expected an integer, got '1MB'"),
        ({"xcom_max_bytes": "-5"}, "invalid [kpo_finalizer]: xcom_max_bytes=-5"),
        ({"fail_fast_exit_codes": "1,x"}, "fail_fast_exit_codes"),
        ({"fail_fast_message_pattern": "[a"}, "fail_fast_message_pattern"),
    ],
)
def test_bad_config_values_name_the_option(config: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        FinalizationPolicy().resolve(reader(config))
    assert message in str(info.value)


def test_finish_settings_combines_operator_arguments_policy_and_builtin_defaults() -> None:
    policy = FinalizationPolicy(log_tail_lines=7, fail_fast_exit_codes=(42,))
    settings = policy.finish_settings(
        do_xcom_push=True,
        multiple_outputs=True,
        on_finish_action="keep_pod",
        skip_on_exit_code=[99],
        termination_grace_period=5,
        read=reader({"xcom_max_bytes": "100"}),
    )
    builtin = FinishSettings()
    assert settings.log_tail_lines == 7
    assert settings.xcom_max_bytes == 100
    assert settings.fail_fast_exit_codes == (42,)
    assert settings.fail_fast_waiting_reasons == builtin.fail_fast_waiting_reasons
    assert settings.skip_on_exit_code == (99,)
    assert settings.on_finish_action == "keep_pod"
    assert settings.multiple_outputs is True
    assert settings.termination_grace_period == 5


def test_airflow_environment_variables_reach_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__LOG_TAIL_LINES", "3")
    monkeypatch.setenv("AIRFLOW__KPO_FINALIZER__ENABLED", "False")
    values = config_defaults(airflow_option)
    assert values["log_tail_lines"] == 3
    assert "enabled" not in values
    assert FinalizationPolicy().resolve().is_enabled is True
    assert finalization_switched_on() is False


@pytest.mark.parametrize(
    ("config", "expected"),
    [({}, True), ({"enabled": "true"}, True), ({"enabled": " OFF "}, False), ({"enabled": "0"}, False)],
)
def test_the_switch_for_new_tasks(config: dict[str, str], expected: bool) -> None:
    assert finalization_switched_on(reader(config)) is expected


def test_a_bad_switch_names_the_option() -> None:
    with pytest.raises(ConfigurationError, match=r"enabled \(AIRFLOW__KPO_FINALIZER__ENABLED\).*'perhaps'"):
        finalization_switched_on(reader({"enabled": "perhaps"}))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, []),
        ({"enabled": "perhaps", "xcom_max_bytes": "1MB"}, ["enabled", "xcom_max_bytes"]),
        ({"log_tail_lines": "-1", "log_tail_bytes": "-2"}, ["log_tail_lines", "log_tail_bytes"]),
        (
            {"fail_fast_message_pattern": "[a", "fallback_to_worker": "sure"},
            ["fallback_to_worker", "fail_fast_message_pattern"],
        ),
    ],
)
def test_policy_config_problems_lists_every_bad_option(config: dict[str, str], expected: list[str]) -> None:
    problems = policy_config_problems(reader(config))
    assert [option for option, _ in problems] == expected
    for option, message in problems:
        assert option in message


def test_package_exports_are_lazy() -> None:
    import triggers

    assert triggers.FinalizationPolicy is FinalizationPolicy
    from triggers.operator import FinalizingKubernetesPodOperator

    assert triggers.FinalizingKubernetesPodOperator is FinalizingKubernetesPodOperator
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = triggers.Nope


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, {}),
        ({"on_success_callback": True}, {"success": "on_success_callback"}),
        ({"on_skipped_callback": True}, {"skipped": "on_skipped_callback"}),
        # Airflow's defaults are email_on_failure=True, email_on_retry=True: no address, no email.
        ({"email_on_failure": True, "email_on_retry": True}, {}),
        ({"email": True}, {}),
        ({"email": True, "email_on_failure": True}, {"failed": "email_on_failure is sent only"}),
        ({"email": True, "email_on_retry": True}, {"failed": "email_on_retry is sent only"}),
        (
            {"email": True, "email_on_failure": True, "email_on_retry": True, "on_success_callback": True},
            {"failed": "email_on_failure / email_on_retry", "success": "on_success_callback"},
        ),
    ],
)
def test_worker_outcomes_route_what_only_a_worker_runs(
    flags: dict[str, bool], expected: dict[str, str]
) -> None:
    got = worker_outcomes(**flags)
    assert set(got) == set(expected)
    for kind, text in expected.items():
        assert text in got[kind]
