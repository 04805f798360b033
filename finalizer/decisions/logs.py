"""Pure rules for the container log in the task log: how a line reads, at what level, where a
resumed stream picks up, and when the cap cuts it.

Upstream (cncf-kubernetes 10.25.0) writes the base container's log in two shapes, and so do we:

- **after the pod ended** (``trigger_reentry`` → ``_write_logs``): every line at INFO as
  ``[base] logs: <line>``, without the kubelet's timestamp (the record has its own time);
- **while the pod runs** (``logging_interval``, the trigger's ``_emit_container_logs``):
  ``[base] <line>`` at the level the line's prefix names (``ERROR:``, ``[WARNING]`` …, else INFO),
  a ``::group::`` / ``::endgroup::`` marker unprefixed (``shown``).

Empty lines are written by neither.

Lines of one level are joined into records of up to 100 lines (``records``): each record is work
for the triggerer's supervisor. Lines are read with ``timestamps=true`` so that a stream that has
to be reopened (a dropped connection while the container runs) can skip what was already written:
``Cursor`` remembers the last timestamp, to the nanosecond.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

_LEVEL_PATTERN = re.compile(
    r"^\s*(?:\[)?(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)(?:\])?\s*[:\-]?\s*", re.IGNORECASE
)
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
#: RFC 3339 with an optional fraction of up to 9 digits, as the kubelet writes it.
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def level_of(message: str) -> int:
    """The logging level a line's prefix names (upstream ``_parse_log_level``); INFO by default."""
    match = _LEVEL_PATTERN.match(message)
    return _LEVELS.get(match.group(1).upper(), logging.INFO) if match else logging.INFO


def stamp_ns(text: str) -> int | None:
    """Nanoseconds since the epoch of a kubelet timestamp, None when ``text`` is not one."""
    match = _STAMP.match(text)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    except ValueError:
        return None
    return int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def split_stamp(line: str) -> tuple[int | None, str]:
    """``(timestamp in ns, message)`` of a ``timestamps=true`` line; ``(None, line)`` without one."""
    head, sep, rest = line.partition(" ")
    stamp = stamp_ns(head)
    if stamp is None:
        return None, line
    return stamp, rest if sep else ""


def final_line(container: str, message: str) -> str:
    """A line written after the pod ended, as upstream's ``_write_logs`` writes it."""
    return f"[{container}] logs: {message}"


def live_line(container: str, message: str) -> tuple[int, str]:
    """A line written while the pod runs, as upstream's trigger writes it: (level, text)."""
    return level_of(message), f"[{container}] {message}"


def is_group_marker(message: str) -> bool:
    """A ``::group::`` / ``::endgroup::`` line, which the UI folds (upstream ``is_log_group_marker``)."""
    return message.startswith(("::group::", "::endgroup::"))


def shown(container: str, message: str, *, live: bool) -> tuple[int, str] | None:
    """The task-log line of one container line, None for one upstream does not write.

    Both upstream paths drop an empty line (``_write_logs``' ``if line:``, #36571 in the trigger).
    While the pod runs, a group marker goes out unprefixed so the UI folds it; after the end,
    ``_write_logs`` prefixes every line, markers too.
    """
    if not message:
        return None
    if not live:
        return logging.INFO, final_line(container, message)
    if is_group_marker(message):
        return logging.INFO, message
    return live_line(container, message)


def truncated_line(container: str, cap: int) -> str:
    """What the task log says where the cap cut the container's log."""
    return (
        f"[{container}] log truncated after {cap} bytes ([kpo_finalizer] log_max_bytes); "
        "the rest is in the container's log on the cluster while the pod exists"
    )


#: Lines joined into one task-log record at most (each keeps its own prefix).
RECORD_LINES = 100
#: Bytes of lines joined into one record at most.
RECORD_BYTES = 16 * 1024


def records(
    lines: list[tuple[int, str]], max_lines: int = RECORD_LINES, max_bytes: int = RECORD_BYTES
) -> list[tuple[int, str]]:
    """Consecutive lines of one level joined into records of at most ``max_lines`` / ``max_bytes``.

    Every record costs the triggerer's supervisor about half a millisecond whatever its size (it
    decodes, routes and writes each one): a 10 MiB log written one record per line kept it busy
    for a minute. Each line keeps its own prefix, so the task log reads as upstream's does.
    """
    out: list[tuple[int, str]] = []
    group: list[str] = []
    level = size = 0
    for line_level, text in lines:
        if group and (line_level != level or len(group) >= max_lines or size + len(text) > max_bytes):
            out.append((level, "\n".join(group)))
            group, size = [], 0
        if not group:
            level = line_level
        group.append(text)
        size += len(text) + 1
    if group:
        out.append((level, "\n".join(group)))
    return out


@dataclass(slots=True)
class Cursor:
    """Where the log written so far ends: its byte count (for the cap) and its last timestamp.

    Several lines can share a timestamp, so the cursor also counts the lines written at the last
    one: a reopened stream (``reopened``) skips exactly that many of them, and every earlier line.
    """

    cap: int
    written: int = 0
    last_stamp: int | None = None
    at_last: int = 0
    truncated: bool = False
    _skip_at_last: int = 0

    def reopened(self) -> None:
        """A new stream starts (``sinceSeconds`` from the last line): it repeats what was written."""
        self._skip_at_last = self.at_last

    def take(self, stamp: int | None, message: str) -> bool:
        """Whether a line is new and fits. A line without a timestamp is always new. Once the cap
        is reached every later line is refused and ``truncated`` says so."""
        if self.truncated:
            return False
        if stamp is not None and self.last_stamp is not None:
            if stamp < self.last_stamp:
                return False
            if stamp == self.last_stamp and self._skip_at_last > 0:
                self._skip_at_last -= 1
                return False
        size = len(message.encode("utf-8", "replace")) + 1
        if self.written + size > self.cap:
            self.truncated = True
            return False
        self.written += size
        if stamp is not None:
            if stamp == self.last_stamp:
                self.at_last += 1
            else:
                self.last_stamp, self.at_last, self._skip_at_last = stamp, 1, 0
        return True

    def since_seconds(self, now_ns: int) -> int | None:
        """``sinceSeconds`` for reopening the stream: from the last line written (None: from the start)."""
        if self.last_stamp is None:
            return None
        return max(1, -(-(now_ns - self.last_stamp) // 1_000_000_000))
