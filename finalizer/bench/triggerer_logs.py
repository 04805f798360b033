"""What ``bench triggerer`` reads from the triggerer's logs: triggers started, loop blocks reported.

A trigger "runs in the runner" once ``TriggerRunner.run_trigger`` logged ``trigger … starting``.
That line carries the trigger's id, so the supervisor writes it to the task's own trigger log,
``…/attempt=N.log.trigger.<job id>.log``, which it creates on the trigger's first line. Counting
those files is therefore counting started triggers, for every variant alike (the classic trigger
reports nothing else we could see); the first line's timestamp says when.

Airflow's watchdog in the runner logs "Triggerer's async thread was blocked for X seconds" (no
trigger id: it goes to the triggerer's own output) whenever its 0.1 s sleep overran the
``[triggerer] blocked_main_thread_warning_threshold``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_BLOCKED = re.compile(r"Triggerer's async thread was blocked for ([0-9.]+) seconds")
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)")


def trigger_log_files(logs_dir: Path, job_id: int) -> list[Path]:
    """The per-trigger log files triggerer ``job_id`` has opened so far."""
    suffix = f".trigger.{job_id}.log"
    found: list[Path] = []
    for root, _dirs, files in os.walk(logs_dir):
        found.extend(Path(root, name) for name in files if name.endswith(suffix))
    return found


def started_at(path: Path) -> float | None:
    """When the trigger of this log started (epoch seconds), from its first line's timestamp."""
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except OSError:
        return None
    try:
        stamp = json.loads(first).get("timestamp")
    except (ValueError, AttributeError):
        stamp = None
    if stamp is None:
        match = _STAMP.search(first.decode(errors="replace"))
        stamp = match.group(1) if match else None
    return _epoch(stamp) if stamp else None


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Blocked:
    at: float | None  # epoch seconds of the log line, if it had a timestamp
    seconds: float


def blocked_warnings(text: str) -> list[Blocked]:
    """Every "async thread was blocked" line in a triggerer's output."""
    found = []
    for line in text.splitlines():
        match = _BLOCKED.search(line)
        if match is None:
            continue
        stamp = _STAMP.search(line)
        found.append(Blocked(_epoch(stamp.group(1)) if stamp else None, float(match.group(1))))
    return found
