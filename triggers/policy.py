"""Per-operator finalization settings, with defaults from Airflow's ``[kpo_finalizer]`` section.

A ``FinalizationPolicy`` is what a DAG author writes (``finalization=FinalizationPolicy(...)``).
Fields left unset take their value from the Airflow configuration *of the process that
resolves the policy* — the triggerer, where the finalizer runs — so operators can change
defaults for every task with ``AIRFLOW__KPO_FINALIZER__<FIELD>`` without touching DAGs.
Only explicitly set fields travel in the serialized trigger.

``[kpo_finalizer] enabled`` is not a per-task default but the switch for *new* tasks, read by the
operator where the task defers (``finalization_switched_on``): with ``enabled = false`` the
operator keeps the provider's ``KubernetesPodTrigger``, while tasks already deferred to a
``FinalizingPodTrigger`` still finish in the triggerer. That is what makes a rollback safe.
A task's own ``FinalizationPolicy(enabled=False)`` still sends that task down the classic path.

Bad values (in code or in the configuration) raise ``ConfigurationError`` naming the field,
the value and the source; nothing is silently replaced by a default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finalizer.config import CONFIG_SECTION, describe_validation_error, validation_problems
from finalizer.exceptions import ConfigurationError
from finalizer.jobs import FinishSettings, OnFinishAction
from triggers.settings import ConfigReader, airflow_option

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


class FinalizationPolicy(BaseModel):
    """How the triggerer finishes one KPO task. ``None`` = take ``[kpo_finalizer] <field>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: False: behave like the classic trigger (worker re-entry). None/True: finish in the triggerer
    #: (unless ``[kpo_finalizer] enabled = false`` where the task defers: then it never gets here).
    enabled: bool | None = None
    #: After the finalizer captured XCom and diagnostics, hand the end of the task to the worker.
    fallback_to_worker: bool | None = None
    xcom_max_bytes: int | None = Field(default=None, gt=0)
    log_tail_lines: int | None = Field(default=None, ge=0)
    log_tail_bytes: int | None = Field(default=None, ge=0)
    #: Base-container exit codes that mean "retrying cannot help": fail without retry.
    fail_fast_exit_codes: tuple[int, ...] | None = None
    #: Container waiting reasons that fail the task at once (no start-up timeout wait).
    fail_fast_waiting_reasons: tuple[str, ...] | None = None
    #: Regex on the termination message that means "fail without retry".
    fail_fast_message_pattern: str | None = None

    @field_validator("fail_fast_message_pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @classmethod
    def build(cls, data: Mapping[str, Any] | None, *, source: str = "finalization") -> FinalizationPolicy:
        """Validate ``data`` into a policy; bad values raise ``ConfigurationError`` naming ``source``."""
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as exc:
            raise ConfigurationError(describe_validation_error(exc, source)) from exc

    @classmethod
    def coerce(cls, value: FinalizationPolicy | Mapping[str, Any] | None) -> FinalizationPolicy:
        """Accept a policy, its serialized dict (trigger kwargs) or None (all defaults)."""
        if isinstance(value, FinalizationPolicy):
            return value
        if value is not None and not isinstance(value, Mapping):
            raise ConfigurationError(
                f"finalization must be a FinalizationPolicy or a dict, not {type(value).__name__}"
            )
        return cls.build(value)

    def serialize(self) -> dict[str, Any]:
        """The explicitly set fields only, as JSON-safe values (lists for tuples)."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump(exclude_unset=True).items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def resolve(self, read: ConfigReader | None = None) -> FinalizationPolicy:
        """Fill every unset field from ``[kpo_finalizer]`` (then from the built-in defaults)."""
        defaults = config_defaults(read)
        merged = {**defaults, **self.model_dump(exclude_unset=True)}
        resolved = FinalizationPolicy.build(merged)
        return resolved

    def finish_settings(
        self,
        *,
        do_xcom_push: bool,
        multiple_outputs: bool = False,
        mapped_length: bool = False,
        on_finish_action: OnFinishAction = "delete_pod",
        skip_on_exit_code: Iterable[int] = (),
        termination_grace_period: int | None = None,
        get_logs: bool = True,
        read: ConfigReader | None = None,
    ) -> FinishSettings:
        """Resolve against the configuration and combine with the operator's own arguments."""
        policy = self.resolve(read)
        builtin = FinishSettings()
        return FinishSettings(
            do_xcom_push=do_xcom_push,
            multiple_outputs=multiple_outputs,
            mapped_length=mapped_length,
            on_finish_action=on_finish_action,
            skip_on_exit_code=tuple(skip_on_exit_code),
            termination_grace_period=termination_grace_period,
            xcom_max_bytes=_pick(policy.xcom_max_bytes, builtin.xcom_max_bytes),
            log_tail_lines=_pick(policy.log_tail_lines, builtin.log_tail_lines),
            log_tail_bytes=_pick(policy.log_tail_bytes, builtin.log_tail_bytes),
            log_tail_on_success=get_logs,
            fail_fast_exit_codes=_pick(policy.fail_fast_exit_codes, builtin.fail_fast_exit_codes),
            fail_fast_waiting_reasons=_pick(
                policy.fail_fast_waiting_reasons, builtin.fail_fast_waiting_reasons
            ),
            fail_fast_message_pattern=policy.fail_fast_message_pattern,
        )

    @property
    def is_enabled(self) -> bool:
        """Resolved value of ``enabled`` (call on a resolved policy)."""
        return self.enabled is not False


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_int_list(text: str) -> list[int]:
    return [_parse_int(item) for item in _parse_list(text)]


#: The switch for new tasks (``finalization_switched_on``), not a policy default.
SWITCH_OPTION = "enabled"

_PARSERS: dict[str, Callable[[str], Any]] = {
    "fallback_to_worker": _parse_bool,
    "xcom_max_bytes": _parse_int,
    "log_tail_lines": _parse_int,
    "log_tail_bytes": _parse_int,
    "fail_fast_exit_codes": _parse_int_list,
    "fail_fast_waiting_reasons": _parse_list,
    "fail_fast_message_pattern": lambda text: text or None,
}


#: Every ``[kpo_finalizer]`` option this module reads.
POLICY_OPTIONS = frozenset({SWITCH_OPTION, *_PARSERS})


def _where(key: str) -> str:
    return f"[{CONFIG_SECTION}] {key} (AIRFLOW__{CONFIG_SECTION.upper()}__{key.upper()})"


def _parse_defaults(reader: ConfigReader) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The per-task defaults that are set, parsed, and ``(option, message)`` for each that fails."""
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, parse in _PARSERS.items():
        raw = reader(key)
        if raw is None:
            continue
        try:
            values[key] = parse(raw)
        except ValueError as exc:
            problems.append((key, f"{_where(key)}: {exc}"))
    return values, problems


def config_defaults(read: ConfigReader | None = None) -> dict[str, Any]:
    """The ``[kpo_finalizer]`` per-task defaults that are set, parsed; errors name the option."""
    values, problems = _parse_defaults(read if read is not None else airflow_option)
    if problems:
        raise ConfigurationError(problems[0][1])
    # Validate the configured values on their own so the message points at the configuration.
    FinalizationPolicy.build(values, source=f"[{CONFIG_SECTION}]")
    return values


def finalization_switched_on(read: ConfigReader | None = None) -> bool:
    """``[kpo_finalizer] enabled`` (default true): may new tasks defer to ``FinalizingPodTrigger``?

    A value that is not a boolean raises ``ConfigurationError`` naming the option.
    """
    raw = (read if read is not None else airflow_option)(SWITCH_OPTION)
    if raw is None:
        return True
    try:
        return _parse_bool(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{_where(SWITCH_OPTION)}: {exc}") from exc


def policy_config_problems(read: ConfigReader | None = None) -> list[tuple[str, str]]:
    """Every problem of the options this module reads, as ``(option, message)``; empty = valid.

    The same parsing as ``config_defaults`` and ``finalization_switched_on``, but one entry per
    bad option instead of stopping at the first.
    """
    reader = read if read is not None else airflow_option
    problems: list[tuple[str, str]] = []
    try:
        finalization_switched_on(reader)
    except ConfigurationError as exc:
        problems.append((SWITCH_OPTION, str(exc)))
    values, bad = _parse_defaults(reader)
    problems.extend(bad)
    try:
        FinalizationPolicy.model_validate(values)
    except ValidationError as exc:
        problems.extend((key, f"[{CONFIG_SECTION}] {text}") for key, text in validation_problems(exc))
    return problems


def worker_outcomes(
    *,
    on_success_callback: bool = False,
    on_skipped_callback: bool = False,
    email: bool = False,
    email_on_failure: bool = False,
    email_on_retry: bool = False,
) -> dict[str, str]:
    """Outcome kind → why the worker, not the triggerer, must end a task with it. Pure.

    Airflow 3.3.2 queues the callbacks of a task a trigger ended for the DAG processor, which runs
    only the failure and retry ones (``_execute_task_callbacks`` drops a success callback with a
    warning; a skipped task queues none), and sends ``email_on_failure`` / ``email_on_retry``
    only from a worker's task runner. Such a task takes the worker path once its XCom is safe:
    the worker only ends it, and Airflow runs the callback or sends the email there. A failure
    goes to the worker for either email flag: whether it becomes a retry is Airflow's decision.
    """
    out: dict[str, str] = {}
    if on_success_callback:
        out["success"] = "on_success_callback runs only in a worker (Airflow 3.3.2)"
    if on_skipped_callback:
        out["skipped"] = "on_skipped_callback runs only in a worker (Airflow 3.3.2)"
    if email and (email_on_failure or email_on_retry):
        flags = [
            n for n, on in (("email_on_failure", email_on_failure), ("email_on_retry", email_on_retry)) if on
        ]
        out["failed"] = f"{' / '.join(flags)} is sent only by a worker (Airflow 3.3.2)"
    return out
