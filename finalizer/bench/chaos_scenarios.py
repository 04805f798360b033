"""The scenarios of ``bench chaos``: each breaks one thing while pods end, then judges every task.

- ``kills``: N times, SIGKILL the whole triggerer at a random moment while a run's pods end, then
  start a new one (which gets the triggers once the old heartbeat is stale and adopts its jobs);
- ``takeover``: two triggerers share a run's tasks (capacity half each); one is SIGKILLed;
- ``kube-faults``: about ``fault_rate`` of the Kubernetes requests on the pods are faulted (reset,
  500, 503, plain-text 429 with Retry-After, 1 s latency, a DELETE applied whose answer is lost);
- ``ledger-outage``: the ledger's path refused and black-holed, each shorter and longer than
  ``ledger_deadline``;
- ``metadb-outage``: Airflow's metadata DB refused and black-holed while the pods end;
- ``bad-input``: the bad-input matrix (``BAD_INPUT``), one task per case.

Every run ends the same way: wait until each task is terminal or handed to a worker, end the
fault, resume handed-over tasks with a real worker, then judge (``chaos_checks.check``).
Random choices come from the campaign's seeded generator.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finalizer.bench import chaos_tasks as tasks
from finalizer.bench.chaos_checks import NO_XCOM, TERMINAL, Expect, Facts, Verdict, check, summary
from finalizer.bench.chaos_triggerers import Triggerers
from finalizer.bench.chaos_world import NAMESPACE, World

#: Seconds a run may take to settle after its fault ended.
SETTLE_TIMEOUT = 180.0


@dataclass
class Context:
    world: World
    triggerers: Triggerers
    rng: random.Random
    kills: int
    tasks: int
    fault_rate: float
    metadb_outage: float
    worker_agents: frozenset[str]
    say: Any = print


@dataclass
class ScenarioResult:
    name: str
    runs: int = 0
    tasks: int = 0
    kills: int = 0
    faults: int = 0
    restarts: int = 0
    handed_over: int = 0
    unsettled: int = 0
    recovery: list[float] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)  # per kill: completions in flight when it hit
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # "run/task" -> verdict
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # "run/task" -> chaos_checks.summary
    notes: list[str] = field(default_factory=list)


def _json(value: Any) -> str:
    return json.dumps(value)


def _forget_then_evict(kube: Any, namespace: str, name: str) -> None:
    """The node loses the containers (exec fails), the base had exited 0, then the pod is evicted."""
    kube.write_xcom(namespace, name, '{"a": 1}')
    kube.kubelet_forget(namespace, name)
    kube.terminate(namespace, name, "base", 0)
    kube.evict(namespace, name)


#: task id → (operator kwargs, drive, expectation, with sidecar)
BAD_INPUT: dict[str, tuple[dict[str, Any], tasks.Drive, Expect, bool]] = {
    "bad_json": ({}, tasks.write_and_exit("{not json"), Expect("failed"), True),
    "oversized": (
        {"finalization": {"xcom_max_bytes": 1000}},
        tasks.write_and_exit(_json({"blob": "x" * 4000})),
        Expect("failed"),
        True,
    ),
    "binary": ({}, tasks.write_and_exit(b"\xff\xfe\x00\x9cnot text"), Expect("failed"), True),
    "no_sidecar": ({}, lambda k, ns, n: k.terminate(ns, n, "base", 0), Expect("failed"), False),
    "gone_before_read": ({}, _forget_then_evict, Expect("failed"), True),
    "exit_nonzero": (
        {},
        tasks.write_and_exit('{"partial": true}', 1),
        Expect("failed", {"partial": True}),
        True,
    ),
    "skip_exit": ({"skip_on_exit_code": [99]}, tasks.write_and_exit("", 99), Expect("skipped"), True),
    "empty": ({}, tasks.write_and_exit(""), Expect("success"), True),
    "null": ({}, tasks.write_and_exit("null"), Expect("success"), True),
    "keep_pod": (
        {"on_finish_action": "keep_pod"},
        tasks.write_and_exit('{"kept": true}'),
        Expect("success", {"kept": True}, keep_pod=True),
        True,
    ),
    "multiple_outputs": (
        {"multiple_outputs": True},
        tasks.write_and_exit('{"a": 1, "b": [2]}'),
        Expect("success", {"a": 1, "b": [2]}),
        True,
    ),
    "to_worker": (
        {"finalization": {"fallback_to_worker": True}},
        tasks.write_and_exit('{"via": "worker"}'),
        Expect("success", {"via": "worker"}, worker=True),
        True,
    ),
}

SPECIAL_KWARGS = {task_id: kwargs for task_id, (kwargs, _, _, _) in BAD_INPUT.items()}


def bad_input_cases() -> list[tasks.Case]:
    return [tasks.Case(t, drive, expect, sidecar) for t, (_, drive, expect, sidecar) in BAD_INPUT.items()]


# -- the shared ending of every run ---------------------------------------------------------------


def _start(ctx: Context, res: ScenarioResult, label: str, cases: list[tasks.Case]) -> tasks.Run:
    run_id = f"{res.name}_{label}"
    run = tasks.prepare(ctx.world, run_id, cases, f"{res.name[:6]}-{label}".replace("_", "-"))
    res.runs += 1
    res.tasks += len(run.tasks)
    return run


def _wait_followed(ctx: Context, run: tasks.Run) -> None:
    from finalizer.testing.polling import wait_for

    wait_for(
        lambda: tasks.followed(ctx.world, run, run.deferred_at), 120, 0.2, f"{run.run_id}'s pods followed"
    )


def _end_pods_over(ctx: Context, run: tasks.Run, window: float) -> threading.Thread:
    """End the run's pods evenly over ``window`` seconds, on a thread (returns at once)."""

    def work() -> None:
        step = window / max(1, len(run.tasks) - 1) if len(run.tasks) > 1 else 0.0
        start = time.monotonic()
        for i, task in enumerate(run.tasks):
            delay = start + i * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule of the pods' ends, not a synchronisation
            task.case.drive(ctx.world.kube, NAMESPACE, task.pod)
            run.ended[task.case.task_id] = time.time()

    thread = threading.Thread(target=work, name=f"end-{run.run_id}", daemon=True)
    thread.start()
    return thread


def _finish(
    ctx: Context,
    res: ScenarioResult,
    run: tasks.Run,
    since: float,
    end_fault: Callable[[], None],
    before_resume: Callable[[], None] | None = None,
    kill_at: float | None = None,
) -> None:
    """Settle, end the fault, resume handed-over tasks with a worker, judge every task."""
    done = tasks.wait_settled(run, SETTLE_TIMEOUT, ctx.triggerers.keep_alive)
    end_fault()
    if done is None:
        res.unsettled += 1
        res.notes.append(
            f"{run.run_id}: not every task settled within {SETTLE_TIMEOUT:g}s: {tasks.states(run)}"
        )
    else:
        res.recovery.append(max(0.0, done - since))
    if before_resume is not None:
        before_resume()
    tasks.resume(ctx.world, run)
    res.handed_over += len(run.handed_over)
    if run.handed_over:
        res.notes.append(
            f"{run.run_id}: {len(run.handed_over)} of {len(run.tasks)} task(s) handed to a worker"
        )
    found = _judge(ctx, res, run)
    if kill_at is not None:
        res.in_flight.append(in_flight_at(run, found, kill_at))


def _judge(ctx: Context, res: ScenarioResult, run: tasks.Run) -> dict[str, Facts]:
    from finalizer.testing.polling import wait_for

    names = set(run.names)
    kept = {t.pod for t in run.tasks if t.case.expect.keep_pod}

    def pods_gone() -> bool:
        left = {p["metadata"]["name"] for p in ctx.world.kube.list_pods(NAMESPACE)} & names
        return left <= kept

    with contextlib.suppress(TimeoutError):  # a DELETE is applied at once: a last cleanup's moment
        wait_for(pods_gone, 10, 0.2, "pods deleted")
    found = tasks.facts(ctx.world, run, ctx.worker_agents)
    for task_id, expect in tasks.expected(run).items():
        key = f"{run.run_id}/{task_id}"
        res.verdicts[key] = verdict = check(expect, found[task_id])
        res.records[key] = summary(expect, found[task_id], verdict)
    return found


def in_flight_at(run: tasks.Run, found: dict[str, Facts], at: float) -> int:
    """Tasks whose pod had ended by ``at`` but that were not terminal yet: completions in flight."""
    count = 0
    for task_id, ended in run.ended.items():
        ends = [t.at for t in found[task_id].transitions if t.new in TERMINAL]
        count += ended <= at and (not ends or min(ends) > at)
    return count


def _no_fault() -> None:
    return None


# -- scenarios ------------------------------------------------------------------------------------


def kills(ctx: Context) -> ScenarioResult:
    res = ScenarioResult("kills")
    per_run = max(1, min(ctx.tasks, 4))
    window = 2.0
    trig = ctx.triggerers.ensure()
    for k in range(ctx.kills):
        run = _start(ctx, res, f"k{k:03d}", tasks.plain_cases(f"kills_k{k:03d}", per_run))
        _wait_followed(ctx, run)
        ender = _end_pods_over(ctx, run, window)
        time.sleep(ctx.rng.uniform(0.0, window + 1.0))  # the kill's random moment during the completions
        killed_at = ctx.triggerers.kill(trig)
        res.kills += 1
        ender.join()
        trig = ctx.triggerers.start()
        _finish(ctx, res, run, killed_at, _no_fault, kill_at=killed_at)
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
    run = _start(ctx, res, "r0", tasks.plain_cases("takeover_r0", count))
    _wait_followed(ctx, run)
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
    ender = _end_pods_over(ctx, run, 2.0)
    time.sleep(ctx.rng.uniform(0.0, 2.5))  # the kill's random moment during the completions
    killed_at = ctx.triggerers.kill(victim)
    res.kills += 1
    ender.join()
    _finish(ctx, res, run, killed_at, _no_fault, kill_at=killed_at)
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
    run = _start(ctx, res, "r0", tasks.plain_cases("kube-faults_r0", max(1, ctx.tasks)))
    _wait_followed(ctx, run)
    faults = ctx.world.kube.faults
    share = 1 - (1 - ctx.fault_rate) ** (1 / len(FAULT_KINDS))  # independent draws: ~fault_rate in all
    path = rf"/namespaces/{NAMESPACE}/pods"
    rules = [faults.add(None, path, times=None, probability=share, **kw) for _, kw in FAULT_KINDS]
    rules.append(
        faults.add("DELETE", path, times=None, probability=ctx.fault_rate, reset_after_handling=True)
    )
    since = time.time()
    _end_pods_over(ctx, run, 3.0).join()
    ended = time.time()

    def end_fault() -> None:
        faults.clear()
        requests = [r for r in ctx.world.kube.requests if r.namespace == NAMESPACE and r.time >= since]
        res.faults = sum(rule.fired for rule in rules)
        res.notes.append(f"{res.faults} of {len(requests)} requests on the pods faulted")

    _finish(ctx, res, run, ended, end_fault)
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
    run = _start(ctx, res, label, cases)
    _wait_followed(ctx, run)
    proxy.set_mode(mode)
    res.faults += 1
    ender = _end_pods_over(ctx, run, min(2.0, seconds / 2))
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

    _finish(ctx, res, run, ended, _no_fault, kill_before_the_worker if long else None)


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
    run = _start(ctx, res, "r0", bad_input_cases())
    _wait_followed(ctx, run)
    _end_pods_over(ctx, run, 1.0).join()
    _finish(ctx, res, run, time.time(), _no_fault)
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

__all__ = ["NO_XCOM", "SCENARIOS", "SPECIAL_KWARGS", "Context", "ScenarioResult"]
