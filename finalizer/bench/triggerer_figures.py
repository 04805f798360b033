"""Turn one variant's raw measurements into the figures issue 12 asks for (flat JSON keys, a table).

Phase windows come from the variant's ``marks``. Loop lag in a window is the larger of what the
probe measured there and the longest block Airflow's own watchdog reported there (the probe
cannot report while a block keeps it from running, e.g. before it is started). "Terminal" means
the task ended (finalizing) or its trigger fired (classic, whose task still needs a worker run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finalizer.bench.report import percentile
from finalizer.bench.triggerer_rounds import TERMINAL, Round, correct, wrong_state
from finalizer.bench.triggerer_sampler import cpu_between, in_window, max_of
from finalizer.bench.triggerer_setup import World
from finalizer.bench.triggerer_variant import VariantRaw

MIB = 1024 * 1024
ROLES = ("supervisor", "runner", "fake")
PHASES = {
    "startup": ("start", "running"),
    "steady": ("steady_start", "steady_end"),
    "burst": ("burst_start", "drained"),
    "restart": ("restart_start", "restart_done"),
}


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _lag(world: World, raw: VariantRaw, start: float, end: float) -> dict[str, float | None]:
    points = world.lag.between(start, end)
    blocks = [b.seconds for b in raw.blocked if b.at is not None and start <= b.at <= end + 1]
    return {
        "p50": _r(percentile(points, 50)),
        "p99": _r(percentile(points, 99)),
        "max": _r(max_of([*points, *blocks])),
        "samples": len(points),
    }


def _terminal_at(rnd: Round, i: int) -> float | None:
    row = rnd.rows.get(i)
    if row is None:
        return None
    if rnd.variant == "finalizing":
        return row.end_date if row.state in TERMINAL else None
    return row.scheduled if row.state == "scheduled" else None


def round_figures(rnd: Round) -> dict[str, Any]:
    """Burst figures of one round: end → terminal, all terminal, correctness, XCom write rate."""
    ends = {s.index: rnd.ended[s.pod_name] for s in rnd.slots if s.pod_name in rnd.ended}
    done = {i: t for i in ends if (t := _terminal_at(rnd, i)) is not None}
    latencies = [done[i] - ends[i] for i in done]
    span = (max(rnd.xcom_times) - min(rnd.xcom_times)) if len(rnd.xcom_times) > 1 else 0.0
    complete = len(done) == len(rnd.slots) and bool(ends)
    return {
        "terminal_correct": correct(rnd),
        "wrong_state": wrong_state(rnd),
        "pods_left": rnd.pods_left,
        "xcom_correct": rnd.xcom_ok,
        "xcom_rows_per_task": _r(rnd.xcom_rows / max(1, len(rnd.slots)), 2),
        "xcom_writes_per_s": _r(rnd.xcom_rows / span, 1) if span > 0 else None,
        "end_to_terminal_p50_s": _r(percentile(latencies, 50)),
        "end_to_terminal_p95_s": _r(percentile(latencies, 95)),
        "end_to_terminal_max_s": _r(max_of(latencies)),
        "burst_all_terminal_s": _r(max(done.values()) - min(ends.values())) if complete else None,
        "after_last_end_s": _r(max(done.values()) - max(ends.values())) if complete else None,
    }


def figures(world: World, raw: VariantRaw, tasks: int, shape: str, xcom_bytes: int) -> dict[str, Any]:
    marks = raw.marks
    out: dict[str, Any] = {"variant": raw.variant, "shape": shape, "tasks": tasks, "xcom_bytes": xcom_bytes}
    out["startup_triggers_running"] = raw.started
    out["startup_all_running_s"] = _r(marks["running"] - marks["start"]) if "running" in marks else None
    out.update(_steady(raw, tasks))
    lags = {
        p: _lag(world, raw, marks[a], marks[b]) for p, (a, b) in PHASES.items() if a in marks and b in marks
    }
    everything = _lag(world, raw, marks["start"], marks["end"])
    out["loop_lag"] = lags
    out["loop_lag_p50_s"], out["loop_lag_p99_s"] = everything["p50"], everything["p99"]
    out["loop_lag_max_s"] = everything["max"]
    out["runner_loop_lag_max_s"] = max_of([lags.get(p, {}).get("max") for p in ("steady", "burst")])
    out["startup_loop_lag_max_s"] = lags.get("startup", {}).get("max")
    out["blocked_warnings"] = len(raw.blocked)
    out["blocked_max_s"] = max_of([b.seconds for b in raw.blocked])
    out["heartbeat_age_max_s"] = _r(max_of(_heartbeat_ages(world, marks)))
    fired = [(due, woke, at) for due, woke, at in raw.canaries if at is not None]
    late = [at - due for due, _, at in fired]
    woke_late = [woke - due for due, woke, _ in fired if woke is not None]
    out["canaries"], out["canaries_fired"] = len(raw.canaries), len(fired)
    out["canary_late_p50_s"], out["canary_late_max_s"] = _r(percentile(late, 50)), _r(max_of(late))
    out["canary_wake_late_p50_s"] = _r(percentile(woke_late, 50))
    out["canary_wake_late_max_s"] = _r(max_of(woke_late))
    if raw.main is not None and raw.variant != "baseline":
        out.update(round_figures(raw.main))
    elif raw.main is not None:
        out.update(terminal_correct=None, wrong_state=wrong_state(raw.main), pods_left=raw.main.pods_left)
        out.update(burst_all_terminal_s=None, end_to_terminal_p95_s=None)
    out["burst_cpu_s"] = _window_cpu(world, marks.get("burst_start"), marks.get("drained"))
    if raw.variant == "classic":
        out["worker_runs_pending"] = tasks
    out.update(_restart(raw))
    out["notes"] = raw.notes
    return out


def _window_cpu(world: World, start: float | None, end: float | None) -> dict[str, float | None] | None:
    """CPU seconds per process between the samples nearest inside [start, end] (e.g. the burst)."""
    if start is None or end is None:
        return None
    inside = in_window(world.sampler.samples, start, end)
    if len(inside) < 2:
        return None
    return {role: _r(cpu_between(inside[0], inside[-1], role), 2) for role in ROLES}


def _heartbeat_ages(world: World, marks: dict[str, float]) -> list[float | None]:
    """Ages of a live triggerer's heartbeat: from SIGTERM until the new one heartbeats, the
    sampled Job is the old, exiting one (its age then says nothing about a triggerer losing work)."""
    gap = (marks.get("restart_start", float("inf")), marks.get("restart_process_start_up", float("inf")))
    return [
        s.heartbeat_age
        for s in in_window(world.sampler.samples, marks["start"], marks["end"])
        if not gap[0] <= s.t <= gap[1]
    ]


def _steady(raw: VariantRaw, tasks: int) -> dict[str, Any]:
    if raw.steady is None:
        return {"steady_cpu_cores": None, "steady_rss_mib": None}
    first, last = raw.steady
    window = last.t - first.t
    cpu = {role: cpu_between(first, last, role) for role in ROLES}
    per_min = {role: _r(None if v is None else 60 * v / window, 2) for role, v in cpu.items()}
    rss = {role: _r(last.rss[role] / MIB, 1) if role in last.rss else None for role in ROLES}
    ours = [cpu["supervisor"], cpu["runner"]]
    requests = sum(raw.requests.values())
    return {
        "steady_window_s": _r(window, 1),
        "steady_cpu_s_per_min": per_min,
        "steady_cpu_cores": _r(sum(v for v in ours if v is not None) / window, 4)
        if None not in ours
        else None,
        "steady_rss_mib_by_process": rss,
        "steady_rss_mib": _r(sum(v for v in (rss["supervisor"], rss["runner"]) if v is not None), 1),
        "kube_requests_per_pod_per_min": _r(requests / max(1, tasks) / (window / 60), 3),
        "kube_requests_by_verb": raw.requests,
    }


def _restart(raw: VariantRaw) -> dict[str, Any]:
    marks = raw.marks
    if "restart_start" not in marks:
        return {}
    out: dict[str, Any] = {
        "restart_all_running_s": _r(marks["restart_running"] - marks["restart_start"])
        if "restart_running" in marks
        else None,
        "restart_triggers_running": raw.restart_started,
    }
    if raw.second is not None:
        second = round_figures(raw.second)
        done = raw.second.done_at
        out["restart_all_terminal_s"] = _r(done - marks["restart_start"]) if done else None
        for key in ("terminal_correct", "wrong_state", "pods_left", "end_to_terminal_p95_s"):
            out[f"restart_{key}"] = second[key]
    return out


def compare(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Finalizing against baseline and classic: what the targets are about."""
    by = {r["variant"]: r for r in results}
    fin, base, classic = by.get("finalizing"), by.get("baseline"), by.get("classic")
    out: dict[str, Any] = {}
    if fin and base:
        for key, name in (
            ("steady_cpu_cores", "cpu_cores_over_baseline"),
            ("steady_rss_mib", "rss_mib_over_baseline"),
        ):
            if fin.get(key) is not None and base.get(key) is not None:
                out[name] = _r(fin[key] - base[key], 4)
        if fin.get("startup_all_running_s") and base.get("startup_all_running_s"):
            out["startup_vs_baseline"] = _r(fin["startup_all_running_s"] / base["startup_all_running_s"], 2)
    if fin and classic and fin.get("steady_cpu_cores") is not None and classic.get("steady_cpu_cores"):
        out["cpu_vs_classic"] = _r(fin["steady_cpu_cores"] / classic["steady_cpu_cores"], 3)
    return out


def timeline(world: World, raw: VariantRaw) -> dict[str, Any]:
    """Seconds since the variant's triggerer started → tasks terminal, loop lag, heartbeat age.

    Lag is reduced to the largest value per half second (the probe reports ten a second).
    """
    start, end = raw.marks["start"], raw.marks["end"]
    fired = TERMINAL if raw.variant == "finalizing" else frozenset({"scheduled"})
    terminal, heartbeat = [], []
    for sample in in_window(world.sampler.samples, start, end):
        if sample.states:
            terminal.append([_r(sample.t - start, 2), sum(n for s, n in sample.states.items() if s in fired)])
        if sample.heartbeat_age is not None:
            heartbeat.append([_r(sample.t - start, 2), _r(sample.heartbeat_age, 2)])
    buckets: dict[int, float] = {}
    for t, lag in world.lag.points:
        if start <= t <= end:
            key = int((t - start) * 2)
            buckets[key] = max(lag, buckets.get(key, 0.0))
    lag_points = [[key / 2, _r(value, 4)] for key, value in sorted(buckets.items())]
    marks = {name: _r(t - start, 2) for name, t in raw.marks.items()}
    return {"terminal": terminal, "loop_lag": lag_points, "heartbeat_age": heartbeat, "marks": marks}
