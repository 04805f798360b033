"""``kpo-finalizer bench chaos``: the checks catch each planted violation, and a small campaign is clean.

The pure checks are fed facts with one violation planted at a time (a doubled XCom, a DELETE
before the XCom, a second terminal transition, …), so the campaign's zeros mean something. The
premise that a worker's requests are told from the triggerer's by User-Agent is checked against
the fake with both real clients. Then every scenario runs small against a real triggerer with
PostgreSQL, and the totals must be zero.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from finalizer.bench import chaos_report
from finalizer.bench.chaos import DEFAULT_SCENARIOS, Options, worker_agents
from finalizer.bench.chaos_checks import (
    NO_XCOM,
    VIOLATIONS,
    Expect,
    Facts,
    PodRequest,
    Transition,
    Verdict,
    check,
    strict_equal,
)
from finalizer.bench.chaos_runs import ScenarioResult
from finalizer.cli import build_parser, main
from finalizer.testing.fake_kube import FakeKube

VALUE = {"rows": 3, "files": ["a", "b"]}
EXPECT = Expect("success", VALUE)
DEFERRED = (
    Transition(None, "queued", 1, 1.0),
    Transition("queued", "running", 1, 2.0),
    Transition("running", "deferred", 1, 3.0),
)
HANDED = (*DEFERRED, Transition("deferred", "scheduled", 1, 10.0))
RESUMED = (
    *HANDED,
    Transition("scheduled", "queued", 1, 11.0),
    Transition("queued", "running", 1, 12.0),
    Transition("running", "success", 1, 13.0),
)


def facts(**changes: Any) -> Facts:
    """A task finished right in the triggerer: XCom stored at 5, pod deleted at 6, success at 7."""
    base: dict[str, Any] = {
        "state": "success",
        "transitions": (*DEFERRED, Transition("deferred", "success", 1, 7.0)),
        "xcoms": (("return_value", VALUE),),
        "xcom_inserts": (("return_value", 5.0),),
        "pod_exists": False,
        "requests": (PodRequest("exec", 4.0, 101, False), PodRequest("delete", 6.0, 200, False)),
    }
    base.update(changes)
    return Facts(**base)


def flags(verdict: Verdict) -> set[str]:
    return {name for name in VIOLATIONS if getattr(verdict, name)}


@pytest.mark.parametrize(
    ("expect", "seen", "violations", "reason"),
    [
        (EXPECT, facts(), set(), None),
        (EXPECT, facts(state="failed"), {"wrong_state"}, "state failed"),
        (EXPECT, facts(state="deferred", transitions=DEFERRED), {"wrong_state"}, "no terminal transition"),
        (
            EXPECT,
            facts(xcoms=(("return_value", VALUE), ("return_value", VALUE))),
            {"doubled"},
            "stored 2 times",
        ),
        (
            EXPECT,
            facts(
                transitions=(
                    *DEFERRED,
                    Transition("deferred", "success", 1, 7.0),
                    Transition("success", "failed", 1, 8.0),
                ),
                state="failed",
            ),
            {"doubled", "wrong_state"},
            "2 terminal transitions",
        ),
        (EXPECT, facts(xcoms=()), {"lost"}, "not in Airflow"),
        (EXPECT, facts(xcoms=(("return_value", {**VALUE, "rows": 3.0}),)), {"lost"}, "differs"),
        (Expect("success"), facts(), {"wrong_state"}, "never wrote"),
        (EXPECT, facts(pod_exists=True), {"leaked"}, "not deleted"),
        (Expect("success", VALUE, keep_pod=True), facts(pod_exists=True), {"leaked"}, "lacks the label"),
        (
            Expect("success", VALUE, keep_pod=True),
            facts(pod_exists=True, pod_labels={"already_checked": "True"}, requests=()),
            set(),
            None,
        ),
        (Expect("success", VALUE, keep_pod=True), facts(requests=()), {"wrong_state"}, "keeps it"),
        (
            EXPECT,
            facts(requests=(PodRequest("delete", 4.5, 200, False),)),
            {"early_delete"},
            "DELETE reached the pod before",
        ),
        (
            EXPECT,
            facts(xcoms=(), xcom_inserts=(), requests=(PodRequest("delete", 4.5, 200, False),)),
            {"early_delete", "lost"},
            "before its XCom",
        ),
        # A worker's classic re-entry deletes before the task runner stores the value: not ours.
        (
            Expect("success", VALUE, worker=True),
            facts(
                transitions=RESUMED,
                xcom_inserts=(("return_value", 14.0),),
                requests=(PodRequest("exec", 12.5, 101, True), PodRequest("delete", 13.0, 200, True)),
            ),
            set(),
            None,
        ),
        (
            Expect("success", VALUE, worker=None),
            facts(transitions=RESUMED, requests=(PodRequest("exec", 10.5, 101, False),)),
            {"after_handover"},
            "after it was handed to a worker",
        ),
        (
            Expect("success", VALUE, worker=None),
            facts(transitions=RESUMED, requests=(PodRequest("exec", 9.5, 101, False),)),
            set(),
            None,
        ),
        (EXPECT, facts(transitions=RESUMED), {"needless_handover"}, "triggerer had to finish it"),
        (Expect("success", VALUE, worker=True), facts(), {"wrong_state"}, "policy asks"),
        (
            Expect("failed", NO_XCOM),
            facts(
                state="failed",
                transitions=(*DEFERRED, Transition("deferred", "failed", 1, 7.0)),
                xcoms=(("__kpo_finalizer_outcome", {"kind": "failed"}),),
                xcom_inserts=(("__kpo_finalizer_outcome", 5.0),),
            ),
            set(),
            None,
        ),
    ],
)
def test_check_catches_each_planted_violation(
    expect: Expect, seen: Facts, violations: set[str], reason: str | None
) -> None:
    verdict = check(expect, seen)
    assert flags(verdict) == violations, verdict.reasons
    assert verdict.ok is (not violations)
    if reason is not None:
        assert any(reason in why for why in verdict.reasons), verdict.reasons


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [(1, 1, True), (1, 1.0, False), (1, True, False), ({"a": [1]}, {"a": [1]}, True), ([1], [1, 2], False)],
)
def test_strict_equal(a: Any, b: Any, equal: bool) -> None:
    assert strict_equal(a, b) is equal


def test_report_counts_a_planted_violation_in_the_totals() -> None:
    clean_run = ScenarioResult("kills", runs=1, tasks=2, kills=1, recovery=[3.0])
    clean_run.verdicts = {"k/a": check(EXPECT, facts()), "k/b": check(EXPECT, facts())}
    bad = ScenarioResult("kube-faults", runs=1, tasks=1, faults=7)
    bad.verdicts = {"f/a": check(EXPECT, facts(xcoms=(("return_value", VALUE),) * 2))}
    rows = [chaos_report.row(clean_run), chaos_report.row(bad)]
    total = chaos_report.totals(rows)
    assert {
        k: total[k] for k in ("tasks", "kills", "faults", "lost", "doubled", "leaked", "wrong_state")
    } == {
        "tasks": 3,
        "kills": 1,
        "faults": 7,
        "lost": 0,
        "doubled": 1,
        "leaked": 0,
        "wrong_state": 0,
    }
    assert not chaos_report.clean(total)
    assert chaos_report.clean(chaos_report.totals(rows[:1]))
    assert not chaos_report.clean(chaos_report.totals([]))
    table = chaos_report.render(rows, total)
    assert "f/a: XCom 'return_value' stored 2 times" in table
    assert "3.0 / 3.0" in table


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(scenarios=("kills", "nope")), "unknown scenario"),
        (Options(scenarios=()), "unknown scenario"),
        (Options(kills=0), "--kills"),
        (Options(fault_rate=1.0), "--fault-rate"),
    ],
)
def test_bad_options_are_refused(options: Options, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        options.check()


def test_cli_refuses_an_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "chaos", "--scenarios", "kills,typo"]) == 2
    assert "unknown scenario(s) ['typo']" in capsys.readouterr().err


def test_cli_parses_every_flag() -> None:
    args = build_parser().parse_args(
        ["bench", "chaos", "--scenarios", "kills, bad-input", "--kills", "3", "--seed", "9", "--tasks", "2",
         "--fault-rate", "0.3", "--ledger-deadline", "2", "--metadb-outage", "3", "--json", "x.json"]
    )  # fmt: skip
    assert (args.scenarios, args.kills, args.seed, args.tasks) == (("kills", "bad-input"), 3, 9, 2)
    assert (args.fault_rate, args.ledger_deadline, args.metadb_outage, args.json_path) == (
        0.3,
        2.0,
        3.0,
        "x.json",
    )


def test_worker_requests_are_told_from_the_triggerers_by_user_agent() -> None:
    """The premise of 'no pod touched after hand-over': the provider's sync client (GET and its
    websocket exec) sends a worker agent; the finalizer's kubernetes_asyncio (exec too) does not."""
    import kubernetes
    from kubernetes.stream import stream
    from kubernetes_asyncio import client as aclient
    from kubernetes_asyncio import config as aconfig
    from kubernetes_asyncio.stream import WsApiClient

    with FakeKube.in_thread() as kube:
        kube.create_pod("default", name="p")
        kube.start("default", "p")

        async def triggerer_side() -> None:
            cfg = aclient.Configuration()
            await aconfig.load_kube_config_from_dict(kube.kubeconfig, client_configuration=cfg)
            async with aclient.ApiClient(cfg) as api:
                await aclient.CoreV1Api(api).read_namespaced_pod("p", "default")
            async with WsApiClient(cfg) as ws:
                await aclient.CoreV1Api(ws).connect_get_namespaced_pod_exec(
                    "p", "default", command=["true"], container="base", stdout=True, stderr=True
                )

        asyncio.run(triggerer_side())
        triggerer = [r.user_agent for r in kube.requests]
        kube.clear_requests()
        with tempfile.NamedTemporaryFile("w", suffix=".json") as cfg_file:
            json.dump(kube.kubeconfig, cfg_file)
            cfg_file.flush()
            core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(cfg_file.name))
            core.read_namespaced_pod("p", "default")
            stream(core.connect_get_namespaced_pod_exec, "p", "default", command=["true"], container="base",
                   stdout=True, stderr=True, stdin=False, tty=False)  # fmt: skip
        worker = [r.user_agent for r in kube.requests]
    agents = worker_agents()
    assert [r in agents for r in triggerer] == [False, False]
    assert [r in agents for r in worker] == [True, True]


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_small_campaign_every_scenario_is_clean(
    tmp_path: Path,
    postgres_admin_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KPO_FINALIZER_TEST_POSTGRES_URL", postgres_admin_url)
    out = tmp_path / "chaos.json"
    argv = ["bench", "chaos", "--kills", "2", "--tasks", "2", "--seed", "3",
            "--metadb-outage", "3", "--json", str(out)]  # fmt: skip
    code = main(argv)
    printed = capsys.readouterr().out
    body = json.loads(out.read_text())
    assert [row["scenario"] for row in body["scenarios"]] == list(DEFAULT_SCENARIOS)
    total = body["totals"]
    assert total["kills"] >= 3, printed[-3000:]  # two in 'kills', one in 'takeover'
    assert total["tasks"] >= 2 * 2 + 2 + 2 + 4 * 2 + 2 * 2 + 12
    assert total["faults"] > 0
    violations = {k: total[k] for k in VIOLATIONS}
    assert violations == dict.fromkeys(VIOLATIONS, 0), printed[-6000:]
    assert all(total[k] == 0 for k in ("lost", "doubled", "leaked", "wrong_state"))
    assert code == 0, printed[-3000:]
