"""Shared output for the demo and the benchmarks: percentiles, plain-text tables, JSON files.

One place formats numbers so every command prints and writes them the same way; the JSON is
the record a README figure is copied from, so it carries the exact command that produced it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct``-th percentile (0 to 100) by linear interpolation; None for no values."""
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    """``{"count", "p50", "p95", "max"}`` of a latency sample (seconds)."""
    return {
        "count": float(len(values)),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats rounded, None as '-', booleans as yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 2) -> str:
    """A left-aligned plain-text table (numbers right-aligned), no trailing spaces."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    raw_rows = [list(headers), *cells]
    widths = [max(len(r[i]) for r in raw_rows) for i in range(len(headers))]
    numeric = [all(_looks_numeric(row[i]) for row in cells) and bool(cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


def _looks_numeric(cell: str) -> bool:
    if cell == "-":
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as pretty JSON (atomically: temp file + rename); returns the path."""
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(target)
    return target


def command_line(argv: Sequence[str] | None = None, program: str = "kpo-finalizer") -> str:
    """The command as a user would retype it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([program, *args])


def flat_table(result: Mapping[str, Any], digits: int = 3) -> str:
    """A two-column table of a (possibly nested) result dict: dotted keys, scalar values."""
    rows: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and len(value) > 8:
            rows.append((prefix, f"[{len(value)} items]"))
        else:
            rows.append((prefix, value))

    walk("", result)
    return render_table(("figure", "value"), rows, digits)
