"""``kpo-finalizer bench chaos``: the fault campaign against a real ``airflow triggerer``.

One world (PostgreSQL metadata DB and ledger behind TCP proxies, the fake Kubernetes API, the
audit triggers; ``chaos_world``), then each chosen scenario (``chaos_scenarios``, the shared
frame of a run in ``chaos_runs``, the bad-input matrix in ``chaos_matrix``) with real triggerer
processes (``chaos_triggerers``) and tasks deferred like a worker defers them (``chaos_tasks``).
Every task is judged by the pure checks (``chaos_checks``) on what Airflow's tables and the
fake's request log show; the table and JSON come from ``chaos_report``.
Exit status 0 only when no task of any scenario broke a rule.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from finalizer.bench.chaos_scenarios import SCENARIOS

DEFAULT_SCENARIOS = tuple(SCENARIOS)


@dataclass(frozen=True, slots=True)
class Options:
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    kills: int = 30
    seed: int = 1
    tasks: int = 4
    fault_rate: float = 0.2
    ledger_deadline: float = 5.0
    metadb_outage: float = 8.0
    keep: bool = False

    def check(self) -> None:
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown or not self.scenarios:
            raise ValueError(
                f"unknown scenario(s) {unknown or list(self.scenarios)}; choose from {list(SCENARIOS)}"
            )
        if self.kills < 1 and "kills" in self.scenarios:
            raise ValueError("--kills must be at least 1 when the kills scenario runs")
        if not 0 < self.fault_rate < 1:
            raise ValueError(f"--fault-rate must be within (0, 1), got {self.fault_rate}")


def worker_agents() -> frozenset[str]:
    """The User-Agents a worker's Kubernetes client sends: the provider's sync ``kubernetes``
    library's, and none at all on its exec (websocket-client sends no User-Agent). The
    triggerer's kubernetes_asyncio sends its own on every request, exec included."""
    from kubernetes import client

    return frozenset({str(client.ApiClient().user_agent), ""})


def run(options: Options, say: Any = print) -> dict[str, Any]:
    """Every chosen scenario in one world; the JSON document's body (``rows``, ``totals``)."""
    from finalizer.bench import chaos_report as report
    from finalizer.bench.chaos_matrix import SPECIAL_KWARGS
    from finalizer.bench.chaos_runs import Context
    from finalizer.bench.chaos_triggerers import Triggerers
    from finalizer.bench.chaos_world import Timing, world

    options.check()
    warnings.simplefilter("ignore", DeprecationWarning)
    rows: list[dict[str, Any]] = []
    exits: list[str] = []
    timing = Timing(ledger_deadline=options.ledger_deadline)
    with world(SPECIAL_KWARGS, seed=options.seed, timing=timing, keep=options.keep, say=say) as w:
        triggerers = Triggerers(w, say)
        ctx = Context(
            world=w,
            triggerers=triggerers,
            rng=random.Random(options.seed),
            kills=options.kills,
            tasks=options.tasks,
            fault_rate=options.fault_rate,
            metadb_outage=options.metadb_outage,
            worker_agents=worker_agents(),
            say=say,
        )
        try:
            for name in options.scenarios:
                say(f"[{name}] starting")
                before, started = triggerers.restarts, time.monotonic()
                result = SCENARIOS[name](ctx)
                result.restarts += triggerers.restarts - before
                rows.append({**report.row(result), "seconds": round(time.monotonic() - started, 1)})
                found = report.counts(list(result.verdicts.values()))
                say(f"[{name}] done in {rows[-1]['seconds']:g} s: {found}")
        finally:
            triggerers.stop_all()
            exits = list(triggerers.exits)
    total = report.totals(rows)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": asdict(options),
        "scenarios": rows,
        "totals": total,
        "clean": report.clean(total),
        "triggerer_exits": exits,
    }


def main(options: Options, *, json_path: str | None, argv: Sequence[str] | None) -> int:
    """Run, print the table, write JSON; 0 when no task of any scenario broke a rule."""
    from finalizer.bench import chaos_report as report
    from finalizer.bench.report import command_line, machine, write_json

    body = run(options)
    print(report.render(body["scenarios"], body["totals"]))
    if json_path:
        payload = {"command": command_line(argv), "machine": machine(), **body}
        print(f"JSON written to {write_json(json_path, payload)}")
    return 0 if body["clean"] else 1
