"""The README's metrics table names every metric ``finalizer.metrics`` defines, with its type and tags.

A metric added to ``FinalizerMetrics`` without a row (or a row left after a metric is gone, or a
changed label) fails here, so the table cannot rot.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from finalizer.metrics import PREFIX, Counter, FinalizerMetrics, Gauge, Histogram

README = Path(__file__).resolve().parents[2] / "README.md"

#: (type, meaning, tags) of one table row.
Row = tuple[str, str, tuple[str, ...]]


def readme_rows(text: str) -> dict[str, Row]:
    """``### Metrics`` table rows by metric name: (type, tags, meaning)."""
    match = re.search(r"^### Metrics\n(.*?)(?=^#{1,3} )", text, re.S | re.M)
    assert match, "README has no '### Metrics' section"
    rows: dict[str, Row] = {}
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 4 or cells[0] in ("metric", "---"):
            continue
        name, kind, tags, meaning = cells
        assert re.fullmatch(rf"`{PREFIX}\.\w+`", name), f"bad metric cell {name!r}"
        short = name.strip("`")[len(PREFIX) + 1 :]
        assert short not in rows, f"{short} has two rows"
        assert meaning, f"{short} has no meaning"
        rows[short] = (kind, meaning, tuple(t.strip().strip("`") for t in tags.split(",") if t.strip()))
    return rows


def defined() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every metric the finalizer registers: name → (type, label names)."""
    metrics = FinalizerMetrics()
    by_name = {
        m.name: (m.kind, m.labelnames)
        for m in vars(metrics).values()
        if isinstance(m, Counter | Gauge | Histogram)
    }
    # The exposition lists everything registered, also a metric not kept as an attribute.
    registered = set(re.findall(rf"^# TYPE {PREFIX}_(\w+) \w+$", metrics.render(), re.M))
    registered = {n.removesuffix("_total") for n in registered}
    assert registered <= set(by_name), f"registered but not typed attributes: {registered - set(by_name)}"
    return by_name


def test_every_metric_has_a_row_with_its_type_and_tags() -> None:
    rows = readme_rows(README.read_text())
    metrics = defined()
    assert set(metrics) - set(rows) == set(), "metrics missing from the README table"
    assert set(rows) - set(metrics) == set(), "README rows for metrics that do not exist"
    for name, (kind, labels) in metrics.items():
        row_kind, _, row_tags = rows[name]
        assert row_kind == kind, f"{name}: README says {row_kind}, metrics.py says {kind}"
        assert row_tags == labels, f"{name}: README tags {row_tags}, metrics.py labels {labels}"


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("| `kpo_finalizer.x` | counter | | |\n", "no meaning"),
        ("| `kpo_finalizer.x` | counter | | a |\n| `kpo_finalizer.x` | counter | | b |\n", "two rows"),
        ("| `x` | counter | | a |\n", "bad metric cell"),
    ],
)
def test_a_malformed_table_is_refused(table: str, problem: str) -> None:
    text = f"### Metrics\n\n| metric | type | tags | meaning |\n| --- | --- | --- | --- |\n{table}\n## Next\n"
    with pytest.raises(AssertionError, match=problem):
        readme_rows(text)


def test_rows_parse_tags_in_order() -> None:
    text = "### Metrics\n| `kpo_finalizer.errors` | counter | `step`, `error` | errors |\n## Next\n"
    assert readme_rows(text) == {"errors": ("counter", "errors", ("step", "error"))}
