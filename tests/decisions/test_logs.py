"""Table tests for finalizer.decisions.logs: line shapes, levels, timestamps, the cursor and the cap."""

from __future__ import annotations

import logging

import pytest

from finalizer.decisions.logs import (
    Cursor,
    final_line,
    level_of,
    live_line,
    records,
    shown,
    split_stamp,
    stamp_ns,
    truncated_line,
)

S = 1_000_000_000
#: 2026-01-01T00:00:00Z in seconds since the epoch.
EPOCH_2026 = 1767225600


LEVEL_CASES = [
    ("plain", "hello", logging.INFO),
    ("error-colon", "ERROR: disk full", logging.ERROR),
    ("bracketed-warning", "[WARNING] slow", logging.WARNING),
    ("warn-dash", "WARN - slow", logging.WARNING),
    ("lower-case", "debug: x", logging.DEBUG),
    ("fatal", "FATAL boom", logging.CRITICAL),
    ("leading-space", "  CRITICAL: x", logging.CRITICAL),
    ("word-inside", "no ERROR here", logging.INFO),
]


@pytest.mark.parametrize(("line", "level"), [c[1:] for c in LEVEL_CASES], ids=[c[0] for c in LEVEL_CASES])
def test_level_of_follows_upstream_prefixes(line: str, level: int) -> None:
    assert level_of(line) == level


STAMP_CASES = [
    ("nanoseconds", "2026-01-01T00:00:00.123456789Z", EPOCH_2026 * S + 123456789),
    ("trimmed-fraction", "2026-01-01T00:00:00.5Z", EPOCH_2026 * S + 500_000_000),
    ("no-fraction", "2026-01-01T00:00:01Z", (EPOCH_2026 + 1) * S),
    ("offset", "2026-01-01T01:00:00+01:00", EPOCH_2026 * S),
    ("not-a-stamp", "hello", None),
    ("bad-date", "2026-13-01T00:00:00Z", None),
]


@pytest.mark.parametrize(("text", "ns"), [c[1:] for c in STAMP_CASES], ids=[c[0] for c in STAMP_CASES])
def test_stamp_ns(text: str, ns: int | None) -> None:
    assert stamp_ns(text) == ns


SPLIT_CASES = [
    ("stamped", "2026-01-01T00:00:00Z hello world", (EPOCH_2026 * S, "hello world")),
    ("empty-write", "2026-01-01T00:00:00Z ", (EPOCH_2026 * S, "")),
    ("stamp-only", "2026-01-01T00:00:00Z", (EPOCH_2026 * S, "")),
    ("unstamped", "just text", (None, "just text")),
]


@pytest.mark.parametrize(("line", "parts"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES])
def test_split_stamp(line: str, parts: tuple[int | None, str]) -> None:
    assert split_stamp(line) == parts


def test_line_shapes_are_upstreams() -> None:
    assert final_line("base", "x") == "[base] logs: x"  # operators/pod.py _write_logs
    assert live_line("base", "ERROR: x") == (logging.ERROR, "[base] ERROR: x")  # the trigger's
    assert "truncated after 100 bytes" in truncated_line("base", 100)


SHOWN_CASES = [
    # (id, message, live, task-log line or None): upstream's _write_logs and _emit_container_logs
    ("final-plain", "x", False, (logging.INFO, "[base] logs: x")),
    ("final-empty", "", False, None),
    ("final-blank-kept", " ", False, (logging.INFO, "[base] logs:  ")),
    ("final-level-ignored", "ERROR: x", False, (logging.INFO, "[base] logs: ERROR: x")),
    ("final-group-prefixed", "::group::Setup", False, (logging.INFO, "[base] logs: ::group::Setup")),
    ("live-plain", "x", True, (logging.INFO, "[base] x")),
    ("live-empty", "", True, None),
    ("live-level", "[WARNING] x", True, (logging.WARNING, "[base] [WARNING] x")),
    ("live-group", "::group::Setup", True, (logging.INFO, "::group::Setup")),
    ("live-endgroup", "::endgroup::", True, (logging.INFO, "::endgroup::")),
    ("live-group-not-at-start", " ::group::x", True, (logging.INFO, "[base]  ::group::x")),
]


@pytest.mark.parametrize(
    ("message", "live", "line"), [c[1:] for c in SHOWN_CASES], ids=[c[0] for c in SHOWN_CASES]
)
def test_shown_matches_upstream(message: str, live: bool, line: tuple[int, str] | None) -> None:
    assert shown("base", message, live=live) == line


def test_cursor_caps_by_bytes_and_says_so() -> None:
    cursor = Cursor(cap=10)
    assert cursor.take(1, "abcd")  # 5 bytes with its newline
    assert cursor.take(2, "efgh")  # 10
    assert not cursor.take(3, "i")
    assert cursor.truncated
    assert not cursor.take(4, "")  # everything after the cap is refused
    assert cursor.written == 10


def test_reopened_stream_skips_exactly_what_was_written() -> None:
    """Lines may share a timestamp: a reopened stream repeats them, and only they are skipped."""
    cursor = Cursor(cap=1000)
    for stamp, text in [(1, "a"), (2, "b"), (2, "c")]:
        assert cursor.take(stamp, text)
    cursor.reopened()
    replay = [(1, "a"), (2, "b"), (2, "c"), (2, "d"), (3, "e")]
    assert [text for stamp, text in replay if cursor.take(stamp, text)] == ["d", "e"]


def test_unstamped_lines_are_always_new() -> None:
    cursor = Cursor(cap=1000)
    assert cursor.take(None, "x")
    assert cursor.take(None, "x")


SINCE_CASES = [
    ("nothing-yet", None, 10 * S, None),
    ("rounds-up", 0, int(2.5 * S), 3),
    ("at-least-one", 5 * S, 5 * S, 1),
]


@pytest.mark.parametrize(
    ("last", "now", "since"), [c[1:] for c in SINCE_CASES], ids=[c[0] for c in SINCE_CASES]
)
def test_since_seconds_covers_the_last_line(last: int | None, now: int, since: int | None) -> None:
    cursor = Cursor(cap=100)
    if last is not None:
        cursor.take(last, "x")
    assert cursor.since_seconds(now) == since


INFO, WARN = logging.INFO, logging.WARNING
RECORD_CASES = [
    ("none", [], []),
    ("one-level-joined", [(INFO, "a"), (INFO, "b")], [(INFO, "a\nb")]),
    ("level-change-splits", [(INFO, "a"), (WARN, "b"), (INFO, "c")], [(INFO, "a"), (WARN, "b"), (INFO, "c")]),
    ("line-bound", [(INFO, str(i)) for i in range(5)], [(INFO, "0\n1"), (INFO, "2\n3"), (INFO, "4")]),
    ("byte-bound", [(INFO, "x" * 6), (INFO, "y" * 6)], [(INFO, "x" * 6), (INFO, "y" * 6)]),
    ("overlong-line-alone", [(INFO, "z" * 50)], [(INFO, "z" * 50)]),
]


@pytest.mark.parametrize(("lines", "out"), [c[1:] for c in RECORD_CASES], ids=[c[0] for c in RECORD_CASES])
def test_records_join_lines_of_one_level_within_bounds(
    lines: list[tuple[int, str]], out: list[tuple[int, str]]
) -> None:
    assert records(lines, max_lines=2, max_bytes=10) == out
