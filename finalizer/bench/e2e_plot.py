"""The PNG of ``bench e2e``: per scenario, each task's pod lifetime after its base container ended.

Drawn from the result's rows (so a JSON file can be re-plotted), one panel per scenario, the
variants side by side: a dot per task for a pod that went (its lifetime after the base end) and,
in the paused scenario, a triangle at the bound for a pod still alive there (its lifetime is at
least that). Matplotlib is the optional ``bench`` extra (``kpo-finalizer[bench]``): without it
``plot`` returns False, writes nothing, and the bench still writes its JSON.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

COLOURS = {"classic": "tab:red", "finalizing": "tab:blue"}


def plot(result: dict[str, Any], path: str | Path, title: str) -> bool:
    """Write the PNG; False (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = list(dict.fromkeys(str(r["scenario"]) for r in result["results"]))
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 3.2 * max(1, len(scenarios))), squeeze=False)
    for ax, scenario in zip((row[0] for row in axes), scenarios, strict=True):
        bound = None
        for variant_result in (r for r in result["results"] if r["scenario"] == scenario):
            variant = str(variant_result["variant"])
            colour = COLOURS.get(variant)
            bound = variant_result.get("bound_s")
            rows = variant_result["rows"]
            went = [
                (i, r["pod_after_base_end"])
                for i, r in enumerate(rows)
                if r["pod_after_base_end"] is not None
            ]
            if went:
                xs, ys = zip(*went, strict=True)
                ax.scatter(xs, ys, color=colour, s=18, label=f"{variant}: pod deleted")
            alive = [i for i, r in enumerate(rows) if not r["pod_deleted"]]
            if alive and bound is not None:
                ax.scatter(
                    alive, [bound] * len(alive), color=colour, marker="^", s=30,
                    label=f"{variant}: pod alive at the bound ({len(alive)})",
                )  # fmt: skip
        if bound is not None:
            ax.axhline(bound, color="black", linestyle="--", linewidth=0.7)
        ax.set_title(f"scenario: {scenario}", fontsize=9)
        ax.set_ylabel("pod alive after\nbase end (s)")
        ax.legend(loc="center right", fontsize=7)
    axes[-1][0].set_xlabel("task index")
    fig.suptitle(textwrap.fill(title, 150), fontsize=8)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return True
