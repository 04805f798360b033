"""Shared bench/demo output: percentiles, tables, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finalizer.bench.report import flat_table, latency_summary, percentile, render_table, write_json


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([3.0], 95, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([float(i) for i in range(1, 101)], 95, 95.05),
    ],
)
def test_percentile(values: list[float], pct: float, expected: float | None) -> None:
    got = percentile(values, pct)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_latency_summary() -> None:
    assert latency_summary([1.0, 3.0, 2.0]) == {
        "count": 3.0,
        "p50": 2.0,
        "p95": pytest.approx(2.9),
        "max": 3.0,
    }
    assert latency_summary([]) == {"count": 0.0, "p50": None, "p95": None, "max": None}


def test_render_table_aligns_and_formats() -> None:
    text = render_table(("name", "n", "ok"), [("a", 1.5, True), ("bbb", None, False)])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "n", "ok"]
    assert lines[2].split() == ["a", "1.50", "yes"]
    assert lines[3].split() == ["bbb", "-", "no"]
    assert lines[2].index("1.50") + 4 == lines[3].index("-") + 1  # numbers right-aligned
    assert all(line == line.rstrip() for line in lines)


def test_flat_table_dotted_keys() -> None:
    text = flat_table({"a": {"b": 1, "c": 0.12345}, "d": list(range(20))})
    assert "a.b" in text
    assert "0.123" in text
    assert "[20 items]" in text


def test_write_json_creates_parents(tmp_path: Path) -> None:
    target = write_json(tmp_path / "x" / "out.json", {"v": [1, 2]})
    assert json.loads(target.read_text()) == {"v": [1, 2]}
    assert not list((tmp_path / "x").glob("*.tmp"))
