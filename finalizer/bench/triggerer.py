"""``kpo-finalizer bench triggerer``: N deferred KPO tasks in one real ``airflow triggerer``.

Does finishing KPO work in the triggerer clog it? Per variant (``baseline``: N triggers that only
wait, Airflow's own cost; ``classic``: the provider's ``KubernetesPodTrigger``; ``finalizing``:
``FinalizingPodTrigger``), one real triggerer on a PostgreSQL metadata DB carries N tasks deferred
exactly as a worker defers them, against the fake Kubernetes API in its own process, with M canary
triggers of another kind and a loop-lag probe on the same runner loop. Phases: start-up, steady
state (S s), burst (every base container ends within W s after writing B bytes of XCom), drain,
and with ``--restart`` a SIGTERM + new triggerer while the pods end (``triggerer_variant``).

Modules: ``triggerer_setup`` (the world), ``triggerer_world`` (DAGs, pods, triggers, deferral),
``triggerer_rounds`` (one round's tasks and what they left), ``triggerer_variant`` (the phases),
``triggerer_sampler`` (CPU/RSS/heartbeat/lag), ``triggerer_logs`` (what the logs tell),
``triggerer_figures`` (figures, JSON keys), ``triggerer_plot`` (PNG). For classic, the drain ends
when every trigger fired: each task still needs one worker run, which this bench does not include.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from finalizer.bench.report import command_line, machine, render_table, write_json
from finalizer.bench.triggerer_world import SHAPES, VARIANTS

CLASSIC_NOTE = (
    "classic: 'terminal' = the trigger fired; every task still needs one worker run "
    "(XCom read, pod delete, task end), not included in this bench"
)


@dataclass(frozen=True, slots=True)
class Options:
    tasks: int
    xcom_bytes: int = 1024
    variants: tuple[str, ...] = VARIANTS
    shape: str = "mapped"
    canaries: int = 10
    steady: float = 60.0
    burst_window: float = 10.0
    restart: bool = False
    keep: bool = False

    def check(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown or not self.variants:
            raise ValueError(
                f"unknown variant(s) {unknown or list(self.variants)}; choose from {list(VARIANTS)}"
            )
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose from {list(SHAPES)}")


def run(options: Options, say: Any = print) -> dict[str, Any]:
    """Every variant, one after the other, in one world; returns the JSON document's body."""
    from finalizer.bench.triggerer_figures import compare, figures, timeline
    from finalizer.bench.triggerer_setup import clear_deferred, world
    from finalizer.bench.triggerer_variant import Settings, VariantRun

    options.check()
    warnings.simplefilter("ignore", DeprecationWarning)
    settings = Settings(
        tasks=options.tasks,
        shape=options.shape,
        xcom_bytes=options.xcom_bytes,
        canaries=options.canaries,
        steady=options.steady,
        burst_window=options.burst_window,
        restart=options.restart,
        startup_timeout=max(120.0, 0.6 * options.tasks),
        drain_timeout=max(120.0, 0.5 * options.tasks) + options.burst_window,
    )
    results = []
    with world(
        options.variants, options.shape, options.tasks, options.canaries, keep=options.keep, say=say
    ) as w:
        for variant in options.variants:
            raw = VariantRun(w, variant, settings, say).execute()
            result = figures(w, raw, options.tasks, options.shape, options.xcom_bytes)
            result["timeline"] = timeline(w, raw)
            results.append(result)
            say(f"[{variant}] done: {_brief(result)}")
            clear_deferred()
        metadata_db = w.metadata_db
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": asdict(options),
        "metadata_db": metadata_db,
        "notes": [CLASSIC_NOTE] if "classic" in options.variants else [],
        "variants": results,
        "comparison": compare(results),
    }


def _brief(result: dict[str, Any]) -> str:
    keys = ("startup_all_running_s", "steady_cpu_cores", "burst_all_terminal_s", "wrong_state", "pods_left")
    return ", ".join(f"{k}={result.get(k)}" for k in keys)


#: (label, key or (key, sub-key)) rows of the printed table.
ROWS: tuple[tuple[str, Any], ...] = (
    ("start-up: all triggers running (s)", "startup_all_running_s"),
    ("steady CPU s/min supervisor", ("steady_cpu_s_per_min", "supervisor")),
    ("steady CPU s/min runner", ("steady_cpu_s_per_min", "runner")),
    ("steady CPU s/min fake API", ("steady_cpu_s_per_min", "fake")),
    ("steady CPU, whole triggerer (cores)", "steady_cpu_cores"),
    ("steady RSS supervisor (MiB)", ("steady_rss_mib_by_process", "supervisor")),
    ("steady RSS runner (MiB)", ("steady_rss_mib_by_process", "runner")),
    ("steady RSS fake API (MiB)", ("steady_rss_mib_by_process", "fake")),
    ("Kubernetes API requests / pod / min", "kube_requests_per_pod_per_min"),
    ("loop lag p50 / all phases (s)", "loop_lag_p50_s"),
    ("loop lag p99 / all phases (s)", "loop_lag_p99_s"),
    ("loop lag max / all phases (s)", "loop_lag_max_s"),
    ("loop lag max, steady + burst (s)", "runner_loop_lag_max_s"),
    ("loop lag max, start-up (s)", "startup_loop_lag_max_s"),
    ("'blocked main thread' warnings", "blocked_warnings"),
    ("heartbeat age max (s)", "heartbeat_age_max_s"),
    ("canary late p50 (s)", "canary_late_p50_s"),
    ("canary late max (s)", "canary_late_max_s"),
    ("canary wake late max (s)", "canary_wake_late_max_s"),
    ("end -> terminal p50 (s)", "end_to_terminal_p50_s"),
    ("end -> terminal p95 (s)", "end_to_terminal_p95_s"),
    ("end -> terminal max (s)", "end_to_terminal_max_s"),
    ("first end -> all terminal (s)", "burst_all_terminal_s"),
    ("last end -> all terminal (s)", "after_last_end_s"),
    ("terminal and correct", "terminal_correct"),
    ("XCom correct", "xcom_correct"),
    ("XCom rows per task", "xcom_rows_per_task"),
    ("XCom writes / s", "xcom_writes_per_s"),
    ("burst CPU s supervisor", ("burst_cpu_s", "supervisor")),
    ("burst CPU s runner", ("burst_cpu_s", "runner")),
    ("burst CPU s fake API", ("burst_cpu_s", "fake")),
    ("wrong state", "wrong_state"),
    ("pods left", "pods_left"),
    ("restart: all running again (s)", "restart_all_running_s"),
    ("restart: all terminal (s)", "restart_all_terminal_s"),
    ("restart: loop lag max (s)", ("loop_lag", "restart", "max")),
    ("restart: wrong state / pods left", ("restart_wrong_state",)),
)


def _cell(result: dict[str, Any], key: Any) -> Any:
    if isinstance(key, str):
        return result.get(key)
    value: Any = result
    for part in key:
        value = value.get(part) if isinstance(value, dict) else None
    if key == ("restart_wrong_state",) and value is not None:
        return f"{value} / {result.get('restart_pods_left')}"
    return value


def render(body: dict[str, Any]) -> str:
    variants = body["variants"]
    headers = ["figure", *(v["variant"] for v in variants)]
    rows = [[label, *(_cell(v, key) for v in variants)] for label, key in ROWS]
    lines = [render_table(headers, rows, digits=3)]
    lines += [f"note: {note}" for note in body["notes"]]
    lines += [f"{k}: {v}" for k, v in body["comparison"].items()]
    for v in variants:
        lines += [f"[{v['variant']}] {note}" for note in v.get("notes", [])]
    return "\n".join(lines)


def main(
    options: Options, *, json_path: str | None, plot_path: str | None, argv: Sequence[str] | None
) -> int:
    """Run, print the table, write JSON (and the PNG); 0 when finalizing ended every task right."""
    body = run(options)
    print(render(body))
    payload = {"command": command_line(argv), "machine": machine(), **body}
    if json_path:
        print(f"JSON written to {write_json(json_path, payload)}")
    if plot_path:
        from finalizer.bench.triggerer_plot import plot

        title = f"{payload['command']}  ({body['date']}, {payload['machine']['cpus']} CPUs)"
        if plot(body["variants"], plot_path, title):
            print(f"plot written to {plot_path}")
        else:
            print("no plot: matplotlib is not installed (pip install 'kpo-finalizer[bench]')")
    fin = [v for v in body["variants"] if v["variant"] == "finalizing"]
    ok = all(v.get("wrong_state") == 0 and v.get("pods_left") == 0 for v in fin)
    return 0 if ok else 1
