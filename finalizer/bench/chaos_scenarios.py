"""The scenarios of ``bench chaos``: each breaks one thing while pods end, then judges every task.

- ``kills``: N times, SIGKILL the whole triggerer at a random moment while a run's pods end, then
  start a new one (which gets the triggers once the old heartbeat is stale and adopts its jobs);
- ``takeover``: two triggerers share a run's tasks (capacity half each); one is SIGKILLed;
- ``kube-faults``: 5x the tasks of a run; ``fault_rate`` is drawn on every Kubernetes request
  (each attempt) on their pods (reset, 500, 503, plain-text 429 with Retry-After, 1 s latency),
  and a DELETE also meets "applied, answer lost" at ``fault_rate`` first, so the logged share is
  above ``fault_rate`` (``chaos_report.fault_share_note`` says by how much and why);
- ``ledger-outage``: the ledger's path refused and black-holed, each shorter and longer than
  ``ledger_deadline``;
- ``metadb-outage``: Airflow's metadata DB refused and black-holed while the pods end;
- ``bad-input``: the bad-input matrix (``chaos_matrix``), one task per case.

Every run ends the same way (``chaos_runs.finish``): wait until each task is terminal or handed
to a worker, end the fault, resume handed-over tasks with a real worker, then judge each task.
Random choices come from the campaign's seeded generator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from finalizer.bench import chaos_report
from finalizer.bench import chaos_runs as runs
from finalizer.bench import chaos_tasks as tasks
from finalizer.bench.chaos_matrix import bad_input_cases
from finalizer.bench.chaos_runs import Context, ScenarioResult
from finalizer.bench.chaos_world import NAMESPACE, PLAIN_TASKS


def kills(ctx: Context) -> ScenarioResult:
    res = ScenarioResult("kills")
    per_run = max(1, min(ctx.tasks, 4))
    window = 2.0
    trig = ctx.triggerers.ensure()
    for k in range(ctx.kills):
        run = runs.start(ctx, res, f"k{k:03d}", tasks.plain_cases(f"kills_k{k:03d}", per_run))
        runs.wait_followed(ctx, run)
        ender = runs.end_pods_over(ctx, run, window)
        time.sleep(ctx.rng.uniform(0.0, window + 1.0))  # the kill's random moment during the completions
        killed_at = ctx.triggerers.kill(trig)
        res.kills += 1
        ender.join()
        trig = ctx.triggerers.start()
        runs.finish(ctx, res, run, killed_at, runs.no_fault, kill_at=killed_at)
        ctx.say(f"[kills] {k + 1}/{ctx.kills}: recovered in {res.recovery[-1] if res.recovery else '-'} s")
    return res


def takeover(ctx: Context) -> ScenarioResult:
    """Two triggerers of half the run's capacity each share its triggers; the one holding more is
    SIGKILLed while the pods end; the other takes its triggers (and ledger jobs) over."""
    from finalizer.testing.polling import wait_for

    res = ScenarioResult("takeover")
    count = max(2, ctx.tasks)
    ctx.triggerers.stop_all()
    half = math.ceil(count / 2)
    pair = [ctx.triggerers.start(half), ctx.triggerers.start(half)]
    run = runs.start(ctx, res, "r0", tasks.plain_cases("takeover_r0", count))
    runs.wait_followed(ctx, run)
    holders = wait_for(
        lambda: (h := tasks.trigger_holders(run)) and None not in h and sum(h.values()) == count and h,
        60,
        0.2,
        "every trigger of the run assigned",
    )
    victim = max(pair, key=lambda p: holders.get(p.job_id, 0))
    res.notes.append(
        "triggers held before the kill: "
        + ", ".join(f"{p.name} {holders.get(p.job_id, 0)}" for p in pair)
        + f"; killed {victim.name}"
    )
    ender = runs.end_pods_over(ctx, run, 2.0)
    time.sleep(ctx.rng.uniform(0.0, 2.5))  # the kill's random moment during the completions
    killed_at = ctx.triggerers.kill(victim)
    res.kills += 1
    ender.join()
    runs.finish(ctx, res, run, killed_at, runs.no_fault, kill_at=killed_at)
    ctx.triggerers.stop_all()
    return res


#: (kind, add-kwargs) of the faults mixed into the Kubernetes requests on the pods.
FAULT_KINDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("reset", {"reset": True, "status": None}),
    ("500", {"status": 500}),
    ("503", {"status": 503, "retry_after": 1}),
    ("429", {"plaintext_429": True, "retry_after": 1}),
    ("latency", {"status": None, "latency": 1.0}),
)


def kube_faults(ctx: Context) -> ScenarioResult:
    res = ScenarioResult("kube-faults")
    ctx.triggerers.ensure()
    # Five times a run's tasks: enough requests that the faulted share is near fault_rate.
    count = min(5 * ctx.tasks, PLAIN_TASKS)
    run = runs.start(ctx, res, "r0", tasks.plain_cases("kube-faults_r0", count))
    runs.wait_followed(ctx, run)
    faults = ctx.world.kube.faults
    # A DELETE first meets its own rule (applied, answer lost: fault_rate of the DELETEs), then
    # like any request the five kinds, each drawn independently: fault_rate per request for the
    # five together, about 1 - (1 - fault_rate)**2 for a DELETE.
    share = 1 - (1 - ctx.fault_rate) ** (1 / len(FAULT_KINDS))
    path = rf"/namespaces/{NAMESPACE}/pods"
    kinds = ["DELETE answer lost"] + [kind for kind, _ in FAULT_KINDS]
    rules = [faults.add("DELETE", path, times=None, probability=ctx.fault_rate, reset_after_handling=True)]
    rules += [faults.add(None, path, times=None, probability=share, **kw) for _, kw in FAULT_KINDS]
    since = time.time()
    runs.end_pods_over(ctx, run, 3.0).join()
    ended = time.time()

    def end_fault() -> None:
        faults.clear()
        requests = [r for r in ctx.world.kube.requests if r.namespace == NAMESPACE and r.time >= since]
        res.faults = sum(rule.fired for rule in rules)
        fired = {kind: rule.fired for kind, rule in zip(kinds, rules, strict=True)}
        deletes = sum(1 for r in requests if r.verb == "delete")
        res.notes.append(chaos_report.fault_share_note(ctx.fault_rate, fired, len(requests), deletes))

    runs.finish(ctx, res, run, ended, end_fault)
    return res


def _outage(
    ctx: Context,
    res: ScenarioResult,
    proxy: Any,
    mode: str,
    seconds: float,
    label: str,
    *,
    long: bool = False,
) -> None:
    """Break ``proxy`` for ``seconds`` while the run's pods end. Past ``ledger_deadline`` (``long``)
    a task may go to a worker; then, before any worker resumes it, the triggerer is SIGKILLed and
    replaced, and the new one has an adoption window in which it must leave those pods alone."""
    cases = tasks.plain_cases(f"{res.name}_{label}", max(1, ctx.tasks))
    if long:
        cases = [tasks.with_expect(c, worker=None) for c in cases]
    run = runs.start(ctx, res, label, cases)
    runs.wait_followed(ctx, run)
    proxy.set_mode(mode)
    res.faults += 1
    ender = runs.end_pods_over(ctx, run, min(2.0, seconds / 2))
    time.sleep(seconds)  # the outage itself
    proxy.set_mode("pass")
    ended = time.time()
    ender.join()
    ctx.say(f"[{res.name}] {mode} for {seconds:g} s over")

    def kill_before_the_worker() -> None:
        if "scheduled" not in tasks.states(run).values():
            return
        ctx.triggerers.kill(ctx.triggerers.ensure())
        res.kills += 1
        ctx.triggerers.start()
        # The observation window: the killed instance's jobs are stale by now and the new one runs
        # an adoption round every second; it must not take a handed-over job in any of them.
        time.sleep(ctx.world.timing.finalizer_stale_threshold + 3.0)

    runs.finish(ctx, res, run, ended, runs.no_fault, kill_before_the_worker if long else None)


def ledger_outage(ctx: Context) -> ScenarioResult:
    res = ScenarioResult("ledger-outage")
    ctx.triggerers.ensure()
    deadline = ctx.world.timing.ledger_deadline
    for mode in ("refuse", "blackhole"):
        for length, seconds in (("short", 0.4 * deadline), ("long", 2.0 * deadline)):
            _outage(
                ctx, res, ctx.world.ledger_proxy, mode, seconds, f"{mode}_{length}", long=length == "long"
            )
    return res


def metadb_outage(ctx: Context) -> ScenarioResult:
    res = ScenarioResult("metadb-outage")
    ctx.triggerers.ensure()
    for mode in ("refuse", "blackhole"):
        _outage(ctx, res, ctx.world.metadb_proxy, mode, ctx.metadb_outage, mode)
    return res


def bad_input(ctx: Context) -> ScenarioResult:
    res = ScenarioResult("bad-input")
    ctx.triggerers.ensure()
    run = runs.start(ctx, res, "r0", bad_input_cases())
    runs.wait_followed(ctx, run)
    runs.end_pods_over(ctx, run, 1.0).join()
    runs.finish(ctx, res, run, time.time(), runs.no_fault)
    return res


#: In campaign order: the scenarios that break the finalizer's foundation (its databases) last, so
#: a finalizer that does not come back from one spoils as few other scenarios as possible.
SCENARIOS: dict[str, Callable[[Context], ScenarioResult]] = {
    "kills": kills,
    "takeover": takeover,
    "kube-faults": kube_faults,
    "bad-input": bad_input,
    "metadb-outage": metadb_outage,
    "ledger-outage": ledger_outage,
}

__all__ = ["SCENARIOS", "Context", "ScenarioResult"]
