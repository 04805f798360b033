"""``examples/airflow.cfg.snippet`` lists every ``[kpo_finalizer]`` option with its true default.

The options come from the code (``FinalizerConfig`` and ``FinalizationPolicy`` fields), and every
value is read back the way the triggerer reads it (``FinalizerConfig.from_mapping``, the policy's
own ``resolve``), so an option added, removed or given another default fails here until the
snippet says so.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest

from finalizer.config import RETRY_STEPS, FinalizerConfig, StepRetry
from finalizer.jobs import FinishSettings
from triggers.policy import FinalizationPolicy

SNIPPET = Path(__file__).resolve().parents[2] / "examples" / "airflow.cfg.snippet"

#: Options whose default depends on the machine: shown commented out, with the value it takes in
#: the apache/airflow image (user airflow, HOME=/home/airflow, no XDG_STATE_HOME).
MACHINE_DEFAULTS = {"state_dir": "/home/airflow/.local/state/kpo-finalizer"}
#: Per-task options whose built-in default is not a FinishSettings field.
POLICY_DEFAULTS: dict[str, Any] = {"enabled": True, "fallback_to_worker": False}

COMMENTED = re.compile(r"^#\s*(\w+) = (.*)$", re.M)
EXAMPLE = re.compile(r"^#\s+example: (\w+) = (.*)$", re.M)


def all_options() -> set[str]:
    return set(FinalizerConfig.model_fields) | set(FinalizationPolicy.model_fields)


def active_options(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert parser.sections() == ["kpo_finalizer"]
    return dict(parser["kpo_finalizer"])


def commented_options(text: str) -> dict[str, str]:
    """``# option = value`` lines naming a known option (prose comments are left alone)."""
    return {k: v for k, v in COMMENTED.findall(text) if k in all_options()}


TEXT = SNIPPET.read_text()
ACTIVE = active_options(TEXT)
COMMENTED_OUT = commented_options(TEXT)


def test_every_option_is_listed_once() -> None:
    listed = list(ACTIVE) + list(COMMENTED_OUT)
    assert sorted(set(listed)) == sorted(listed), "an option is listed twice"
    assert set(listed) - all_options() == set(), "the snippet names options the code does not know"
    assert all_options() - set(listed) == set(), "options missing from the snippet"
    assert set(COMMENTED_OUT) == set(MACHINE_DEFAULTS), "only machine-dependent defaults are commented"


def test_machine_dependent_defaults_are_the_apache_airflow_images(monkeypatch: pytest.MonkeyPatch) -> None:
    for option, value in MACHINE_DEFAULTS.items():
        assert COMMENTED_OUT[option] == value
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/airflow")
    assert str(FinalizerConfig().state_dir) == MACHINE_DEFAULTS["state_dir"]
    monkeypatch.setenv("XDG_STATE_HOME", "/var/lib/state")
    assert str(FinalizerConfig().state_dir) == "/var/lib/state/kpo-finalizer"


@pytest.mark.parametrize("option", sorted(set(FinalizerConfig.model_fields) - set(MACHINE_DEFAULTS)))
def test_loop_option_value_is_its_default(option: str) -> None:
    parsed = FinalizerConfig.from_mapping({option: ACTIVE[option]})
    default = FinalizerConfig.model_fields[option].get_default(call_default_factory=True)
    assert getattr(parsed, option) == default, f"{option} = {ACTIVE[option]!r} is not the default {default!r}"


@pytest.mark.parametrize("option", sorted(FinalizationPolicy.model_fields))
def test_per_task_option_value_is_its_default(option: str) -> None:
    if option in POLICY_DEFAULTS:
        expected = POLICY_DEFAULTS[option]
        assert ACTIVE[option] == str(expected).lower()
        return
    assert option in FinishSettings.model_fields, f"{option}: add its built-in default to POLICY_DEFAULTS"
    resolved = FinalizationPolicy().resolve(lambda key: ACTIVE[key] if key == option else None)
    value = getattr(resolved, option)
    default = getattr(FinishSettings(), option)
    assert (default if value is None else value) == default, f"{option} = {ACTIVE[option]!r}"


def test_the_examples_given_are_valid() -> None:
    examples = dict(EXAMPLE.findall(TEXT))
    assert set(examples) == {"ledger_url", "retry"}
    config = FinalizerConfig.from_mapping(examples)
    assert config.ledger_url == examples["ledger_url"]
    assert (
        config.retry_policy("push_xcom").max_attempts
        == json.loads(examples["retry"])["push_xcom"]["max_attempts"]
    )


def test_the_retry_comment_names_the_steps_and_their_defaults() -> None:
    comment = TEXT[TEXT.index("# Per-step retry") : TEXT.index("\nretry =")]
    flat = " ".join(line.lstrip("# ") for line in comment.splitlines())
    assert "Steps: " + ", ".join(RETRY_STEPS) + "." in flat
    for name, value in StepRetry().model_dump().items():
        number = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"{name} {number}" in flat, f"the retry comment must give {name}'s default {number}"


def test_the_whole_snippet_is_the_default_configuration() -> None:
    loop = {k: v for k, v in ACTIVE.items() if k in FinalizerConfig.model_fields}
    assert FinalizerConfig.from_mapping(loop) == FinalizerConfig()
    per_task = FinalizationPolicy().resolve(ACTIVE.get)
    settings = per_task.finish_settings(do_xcom_push=True, read=ACTIVE.get)
    assert settings == FinishSettings()
