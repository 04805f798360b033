"""Pure triage: how does the task end, once its pod's wait is over?

``triage`` turns a ``Completed`` (from ``pod_state.assess``) into the task's ``Outcome``: success,
failed (Airflow applies retries), skipped (``skip_on_exit_code``) or fail-fast (deterministic
failures configured in ``FinishSettings``), with ``event_status`` set to what the classic trigger
event would have said, so a fallback to the operator's ``trigger_reentry`` behaves as upstream.

The steps before it are re-exported here (``assess``, ``Completed``, ``Pending``, …), so callers
keep one name for "pod snapshot → completion → outcome".
"""

from __future__ import annotations

import re
from functools import lru_cache

from finalizer.decisions.completion import EVENT_STATUS, Completed, CompletionKind, EventStatus, Pending
from finalizer.decisions.pod_state import DISRUPTION_REASONS, assess, eviction
from finalizer.decisions.startup import FATAL_WAITING_REASONS, PULL_WAITING_REASONS, TRANSIENT_PULL_PATTERNS
from finalizer.exceptions import ConfigurationError
from finalizer.jobs import FinishSettings, Outcome, OutcomeKind
from finalizer.pod import PodView

__all__ = [
    "DISRUPTION_REASONS",
    "EVENT_STATUS",
    "FATAL_WAITING_REASONS",
    "PULL_WAITING_REASONS",
    "TRANSIENT_PULL_PATTERNS",
    "Completed",
    "CompletionKind",
    "EventStatus",
    "Pending",
    "assess",
    "eviction",
    "triage",
]


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigurationError(
            f"fail_fast_message_pattern {pattern!r} is not a valid regex: {exc}"
        ) from exc


def _fail_fast_rule(
    completion: Completed, code: int | None, message: str | None, settings: FinishSettings
) -> str | None:
    """Which configured deterministic-failure rule matched, if any (human-readable)."""
    if code is not None and code in settings.fail_fast_exit_codes:
        return f"exit code {code} is configured as a deterministic failure"
    if completion.waiting_reason and completion.waiting_reason in settings.fail_fast_waiting_reasons:
        return f"waiting reason {completion.waiting_reason} is configured as a deterministic failure"
    pattern = settings.fail_fast_message_pattern
    if pattern and message and _compile(pattern).search(message):
        return f"termination message matches {pattern!r}, configured as a deterministic failure"
    return None


def _fill_from_pod(
    pod: PodView, completion: Completed, exit_code: int | None, message: str | None
) -> tuple[int | None, str | None]:
    base = pod.container(completion.base_container) if completion.base_container else None
    if base is None or base.state != "terminated":
        return exit_code, message
    return (base.exit_code if exit_code is None else exit_code), (message or base.message)


def triage(completion: Completed, pod: PodView | None, settings: FinishSettings) -> Outcome:
    """How the task ends. Precedence mirrors upstream: skip > success > fail-fast > failed.

    ``pod`` is the latest snapshot (None when gone); it only fills in an exit code or a
    termination message that ``completion`` lacks. Raises ``ConfigurationError`` when
    ``settings.fail_fast_message_pattern`` is not a valid regular expression.
    """
    exit_code, message = completion.exit_code, completion.termination_message
    if pod is not None and (exit_code is None or message is None):
        exit_code, message = _fill_from_pod(pod, completion, exit_code, message)
    status = completion.event_status
    if exit_code is not None and exit_code in settings.skip_on_exit_code:
        reason = f"{completion.reason}; exit code {exit_code} is in skip_on_exit_code: skipping"
        return Outcome(
            kind=OutcomeKind.SKIPPED,
            reason=reason,
            event_status=status,
            exit_code=exit_code,
            termination_message=message,
        )
    if completion.kind is CompletionKind.SUCCEEDED or exit_code == 0:
        # Upstream: an error event whose base container exited 0 is treated as success.
        return Outcome(
            kind=OutcomeKind.SUCCESS,
            reason=completion.reason,
            event_status="success",
            exit_code=exit_code,
            termination_message=message,
        )
    reason = completion.reason + (f": {message}" if message and message not in completion.reason else "")
    rule = _fail_fast_rule(completion, exit_code, message, settings)
    if rule is not None:
        return Outcome(
            kind=OutcomeKind.FAIL_FAST,
            reason=f"{reason} ({rule}; failing without retry)",
            event_status=status,
            exit_code=exit_code,
            termination_message=message,
        )
    return Outcome(
        kind=OutcomeKind.FAILED,
        reason=reason,
        event_status=status,
        exit_code=exit_code,
        termination_message=message,
    )
