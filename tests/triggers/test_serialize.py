"""FinalizingPodTrigger: kwargs compatibility with KubernetesPodTrigger and exact serialize round trips."""

from __future__ import annotations

import datetime
import inspect
import json
from typing import Any

import pytest
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

from finalizer.exceptions import ConfigurationError
from triggers.pod import CLASSPATH, FinalizingPodTrigger
from triggers.policy import FinalizationPolicy

START = datetime.datetime(2026, 11, 22, 4, 30, 0, 123456, tzinfo=datetime.UTC)


def full_kwargs() -> dict[str, Any]:
    return {
        "pod_name": "train-abc",
        "pod_namespace": "jobs",
        "trigger_start_time": START,
        "base_container_name": "base",
        "kubernetes_conn_id": "k8s",
        "connection_extras": {"extra__kubernetes__namespace": "x"},
        "poll_interval": 3.5,
        "cluster_context": "ctx",
        "config_dict": {"apiVersion": "v1", "clusters": [{"name": "c", "cluster": {"server": "http://x"}}]},
        "in_cluster": False,
        "get_logs": False,
        "startup_timeout": 30,
        "startup_check_interval": 1.5,
        "schedule_timeout": 40,
        "on_finish_action": "keep_pod",
        "on_kill_action": "keep_pod",
        "termination_grace_period": 7,
        "last_log_time": None,
        "logging_interval": None,
        "trigger_kwargs": {"_execution_deadline": 1_900_000_000, "custom": [1, "a"]},
        "log_events_on_startup": False,
        "pod_uid": "0b5e-uid",
        "do_xcom_push": True,
        "multiple_outputs": True,
        "skip_on_exit_code": [99, 100],
        "xcom_mapped_length": True,
        "has_callbacks": False,
        "finalization": {"fail_fast_exit_codes": [2], "log_tail_lines": 5},
    }


def test_accepts_every_keyword_of_the_upstream_trigger() -> None:
    upstream = set(inspect.signature(KubernetesPodTrigger.__init__).parameters) - {"self"}
    ours = set(inspect.signature(FinalizingPodTrigger.__init__).parameters) - {"self"}
    assert upstream <= ours
    for name in upstream:
        up = inspect.signature(KubernetesPodTrigger.__init__).parameters[name].default
        assert inspect.signature(FinalizingPodTrigger.__init__).parameters[name].default == up, name


@pytest.mark.parametrize(
    "kwargs",
    [
        full_kwargs(),
        {
            "pod_name": "p",
            "pod_namespace": "default",
            "trigger_start_time": START,
            "base_container_name": "base",
        },
    ],
    ids=["every-kwarg", "minimal"],
)
def test_serialize_round_trips_exactly(kwargs: dict[str, Any]) -> None:
    classpath, first = FinalizingPodTrigger(**kwargs).serialize()
    assert classpath == CLASSPATH
    for key, value in kwargs.items():
        assert first[key] == value, key
    again = FinalizingPodTrigger(**first).serialize()
    assert again == (classpath, first)


def test_round_trip_through_the_task_sdk_serde_and_the_triggerer_decoder() -> None:
    """What the worker sends (serde) and the triggerer rebuilds (decrypt + smart_decode)."""
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import serialize as serde_serialize
    from airflow.serialization.decoders import smart_decode_trigger_kwargs

    trigger = FinalizingPodTrigger(**full_kwargs())
    classpath, kwargs = trigger.serialize()
    wire = json.dumps(serde_serialize(kwargs))  # the API stores the worker's dict as JSON text
    decoded = {k: smart_decode_trigger_kwargs(v) for k, v in Trigger._decrypt_kwargs(wire).items()}
    rebuilt = FinalizingPodTrigger(**decoded)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.trigger_start_time == START
    assert rebuilt.finalization == FinalizationPolicy(fail_fast_exit_codes=(2,), log_tail_lines=5)


def test_a_bad_policy_fails_at_construction_naming_the_field() -> None:
    kwargs = full_kwargs() | {"finalization": {"xcom_max_bytes": -1}}
    with pytest.raises(ConfigurationError, match="xcom_max_bytes"):
        FinalizingPodTrigger(**kwargs)


def test_scalar_skip_on_exit_code_is_normalised() -> None:
    kwargs = full_kwargs() | {"skip_on_exit_code": 3}
    assert FinalizingPodTrigger(**kwargs).serialize()[1]["skip_on_exit_code"] == [3]


def test_job_spec_carries_policy_operator_settings_and_startup_clocks() -> None:
    trigger = FinalizingPodTrigger(**full_kwargs())

    class TI:
        id = "0190-ti"
        dag_id = "d"
        task_id = "t"
        run_id = "r"
        map_index = -1
        try_number = 2

    trigger.task_instance = TI()
    spec = trigger.job_spec(trigger.finalization.resolve(lambda key: None))
    assert spec.key == "0190-ti:2:0b5e-uid"
    assert spec.pod.base_container == "base"
    assert spec.settings.multiple_outputs is True
    assert spec.settings.mapped_length is True
    assert spec.settings.skip_on_exit_code == (99, 100)
    assert spec.settings.on_finish_action == "keep_pod"
    assert spec.settings.fail_fast_exit_codes == (2,)
    assert spec.settings.log_tail_lines == 5
    assert spec.settings.log_tail_on_success is False  # get_logs=False
    assert spec.startup.schedule_timeout == 40
    assert spec.startup.startup_timeout == 30
    assert spec.startup.trigger_start == START
    assert spec.startup.execution_deadline == datetime.datetime.fromtimestamp(1_900_000_000, tz=datetime.UTC)
    assert spec.cluster.config_dict == full_kwargs()["config_dict"]
