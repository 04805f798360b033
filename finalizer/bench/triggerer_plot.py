"""The PNG timeline of ``bench triggerer``: tasks terminal, runner loop lag, heartbeat age, per variant.

Drawn from the timelines in the result (so a JSON file can be re-plotted). Matplotlib is an optional
extra (``kpo-finalizer[bench]``): without it ``plot`` says so and returns False, and the bench still
writes its JSON.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLOURS = {"baseline": "tab:gray", "classic": "tab:red", "finalizing": "tab:blue"}
PHASE_MARKS = ("running", "steady_start", "burst_start", "drained", "restart_start")


def plot(results: Sequence[dict[str, Any]], path: str | Path, title: str) -> bool:
    """Write the PNG; False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    terminal_ax, lag_ax, beat_ax = axes
    for result in results:
        line = result.get("timeline") or {}
        variant = str(result["variant"])
        colour = COLOURS.get(variant)
        for ax, key in ((terminal_ax, "terminal"), (lag_ax, "loop_lag"), (beat_ax, "heartbeat_age")):
            points = line.get(key) or []
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=variant, color=colour, linewidth=1)
        for name in PHASE_MARKS:
            at = (line.get("marks") or {}).get(name)
            if at is not None:
                terminal_ax.axvline(at, color=colour, linestyle=":", linewidth=0.7)
    terminal_ax.set_ylabel("tasks terminal\n(classic: triggers fired)")
    lag_ax.set_ylabel("runner loop lag (s)\nmax per 0.5 s")
    lag_ax.axhline(0.2, color="black", linestyle="--", linewidth=0.7)
    beat_ax.set_ylabel("heartbeat age (s)")
    beat_ax.axhline(15, color="black", linestyle="--", linewidth=0.7)
    beat_ax.set_xlabel("seconds since the variant's triggerer started (dotted: phase boundaries)")
    terminal_ax.legend(loc="upper left")
    terminal_ax.set_title(textwrap.fill(title, 150), fontsize=8)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True
