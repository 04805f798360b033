"""``bench chaos`` results: per-scenario rows, the totals, the printed table and the JSON body.

Pure functions over the scenarios' results, so what each column counts is tested on its own:
a task counts once per kind of violation (a task both lost and leaked counts in both columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finalizer.bench.chaos_checks import VIOLATIONS, Verdict
from finalizer.bench.chaos_runs import ScenarioResult
from finalizer.bench.report import percentile, render_table


def counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    return {name: sum(bool(getattr(v, name)) for v in verdicts) for name in VIOLATIONS}


def row(result: ScenarioResult) -> dict[str, Any]:
    recovery = result.recovery
    return {
        "scenario": result.name,
        "runs": result.runs,
        "tasks": result.tasks,
        "kills": result.kills,
        "faults": result.faults,
        "restarts": result.restarts,
        "handed_over": result.handed_over,
        "unsettled_runs": result.unsettled,
        **counts(list(result.verdicts.values())),
        "recovery_p50_s": percentile(recovery, 50),
        "recovery_max_s": max(recovery) if recovery else None,
        "kills_with_completions_in_flight": sum(n > 0 for n in result.in_flight),
        "completions_in_flight_at_kills": sum(result.in_flight),
        "failures": {key: list(v.reasons) for key, v in result.verdicts.items() if not v.ok},
        "notes": list(result.notes),
        "tasks_seen": dict(result.records),
    }


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The campaign's ``totals``: tasks, kills, faults and every violation summed over scenarios."""
    keys = ("tasks", "kills", "faults", "restarts", "handed_over", *VIOLATIONS)
    return {key: sum(int(r[key]) for r in rows) for key in keys}


def clean(total: dict[str, int]) -> bool:
    """No violation of any kind (and at least one task judged)."""
    return total["tasks"] > 0 and all(total[name] == 0 for name in VIOLATIONS)


HEADERS = (
    "scenario",
    "runs",
    "tasks",
    "kills / faults",
    "restarts",
    "to worker",
    "lost",
    "doubled",
    "leaked",
    "wrong state",
    "DELETE before XCom",
    "touched after handover",
    "needless handover",
    "recovery p50 / max (s)",
)


def fault_share_note(rate: float, fired: dict[str, int], requests: int, deletes: int) -> str:
    """The kube-faults note with the true shares (review of issue 13: "33 % logged vs 20 % drawn").

    ``fired``: faults by kind, ``"DELETE answer lost"`` first, then the five kinds every request
    may meet. The total share is above ``rate`` and that is right: the five kinds are drawn at
    ``rate`` on every request (per attempt: each retry is a request and draws again), and a DELETE
    also meets its own rule first, so about ``1 - (1 - rate)**2`` of the DELETEs are faulted —
    and DELETEs are many (a lost answer is retried, and aiohttp itself resends an idempotent
    request once when a reused connection was reset, so the server logs more than were sent).
    """
    lost = fired.get("DELETE answer lost", 0)
    kinds = sum(n for kind, n in fired.items() if kind != "DELETE answer lost")
    total = lost + kinds

    def pct(part: int, whole: int) -> str:
        return f"{part / whole:.0%}" if whole else "-"

    by_kind = ", ".join(f"{kind} {n}" for kind, n in fired.items())
    return (
        f"{total} of {requests} requests on the pods faulted ({pct(total, requests)}; {by_kind}): "
        f"the five kinds on {pct(kinds, requests)} of all requests ({rate:.0%} drawn per request), "
        f"'DELETE answer lost' on {lost} of {deletes} DELETEs ({pct(lost, deletes)}, {rate:.0%} drawn) "
        f"on top, so about {1 - (1 - rate) ** 2:.0%} of the DELETEs are faulted, and they are "
        f"{pct(deletes, requests)} of the requests"
    )


def render(rows: Sequence[dict[str, Any]], total: dict[str, int]) -> str:
    def recovery(r: dict[str, Any]) -> str:
        p50, top = r["recovery_p50_s"], r["recovery_max_s"]
        return "-" if p50 is None else f"{p50:.1f} / {top:.1f}"

    def cells(r: dict[str, Any], rec: str) -> list[Any]:
        return [
            r["scenario"],
            r["runs"],
            r["tasks"],
            f"{r['kills']} / {r['faults']}",
            r["restarts"],
            r["handed_over"],
            *(r[name] for name in VIOLATIONS),
            rec,
        ]

    body = [cells(r, recovery(r)) for r in rows]
    body.append(cells({"scenario": "total", "runs": sum(r["runs"] for r in rows), **total}, ""))
    lines = [render_table(HEADERS, body)]
    for r in rows:
        if r["kills_with_completions_in_flight"]:
            lines.append(
                f"[{r['scenario']}] {r['kills_with_completions_in_flight']} kill(s) hit while completions "
                f"were in flight ({r['completions_in_flight_at_kills']} tasks: pod ended, not yet terminal)"
            )
        lines += [f"[{r['scenario']}] {note}" for note in r["notes"]]
        lines += [f"[{r['scenario']}] {key}: {'; '.join(why)}" for key, why in r["failures"].items()]
    return "\n".join(lines)
