"""``kpo-finalizer`` command line: ``demo``, ``bench …``, ``fake-kube``, ``status``, ``check-config``.

Only argument parsing and dispatch live here; each command's module is imported when it runs,
so ``--help`` stays fast and Airflow is never imported before its environment is set.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {value}")
    return value


#: Stands for the fake cluster's annotation table in ``fake-kube --help``, filled in only when
#: the help is shown (the table lives beside the fake kubelet, whose import takes a while).
_ANNOTATIONS_EPILOG = "<fake-kube annotations>"


class _FakeKubeHelp(argparse.RawDescriptionHelpFormatter):
    """Keeps the annotation table's columns and fills it in at display time."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text == _ANNOTATIONS_EPILOG:
            from finalizer.demo.fake_kube_command import annotations_help

            text = annotations_help()
        return super()._fill_text(text, width, indent)


DESCRIPTION = (
    "Finish KubernetesPodOperator tasks inside the Airflow triggerer. "
    "Commands to try it (demo, fake-kube), measure it (bench) and operate it (status, check-config)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpo-finalizer", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run N KPO tasks through a real airflow triggerer on a fake cluster")
    demo.add_argument("--pods", type=_positive_int, default=20, help="number of KPO tasks (default 20)")
    demo.add_argument(
        "--json", dest="json_path", default=None, help="write per-task results and summary here"
    )
    demo.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        help="give up after this many seconds (default: by N)",
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME (logs) afterwards")

    bench = sub.add_parser("bench", help="measure: api-load | finalize | e2e | triggerer | chaos")
    bsub = bench.add_subparsers(dest="bench", required=True)

    api = bsub.add_parser(
        "api-load", help="Kubernetes API requests and CPU: upstream KubernetesPodTrigger vs our watcher"
    )
    api.add_argument("--pods", type=_positive_int, default=100, help="running pods watched (default 100)")
    api.add_argument("--duration", type=_positive_float, default=30.0, help="seconds each side watches")
    api.add_argument(
        "--poll-interval", type=_positive_float, default=2.0, help="upstream poll_interval (2 s)"
    )
    api.add_argument("--json", dest="json_path", default="bench-api-load.json", help="write the figures here")

    fin = bsub.add_parser("finalize", help="the finalizer pipeline alone against the fake cluster")
    fin.add_argument("--pods", type=_positive_int, default=500, help="pods finalized (default 500)")
    fin.add_argument("--latency-ms", type=_non_negative_float, default=0.0, help="added per API request")
    fin.add_argument(
        "--concurrency", type=_positive_int, default=16, help="jobs finalizing at once (default 16)"
    )
    fin.add_argument("--json", dest="json_path", default="bench-finalize.json", help="write the figures here")
    fin.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="as the config's event_loop",
    )

    e2e = bsub.add_parser(
        "e2e", help="classic deferrable KPO vs FinalizingKubernetesPodOperator, real Airflow"
    )
    e2e.add_argument("--tasks", type=_positive_int, default=10, help="tasks per variant (default 10)")
    e2e.add_argument(
        "--scenarios",
        default="idle,contention",
        help="comma-separated: idle, contention, paused (the DAG paused while its pods run), "
        "jobs, jobs-contention (KubernetesJobOperator, parallelism 1 and 3; default idle,contention)",
    )
    e2e.add_argument("--json", dest="json_path", default="bench-e2e.json", help="write the figures here")
    e2e.add_argument("--keep", action="store_true", help="keep the temporary home (component logs)")

    _add_bench_triggerer(bsub)
    _add_bench_chaos(bsub)

    fake = sub.add_parser(
        "fake-kube",
        help="serve the fake Kubernetes API until Ctrl-C; print its kubeconfig",
        description="Serve a fake Kubernetes API on 127.0.0.1 until Ctrl-C, to try kpo-finalizer without\n"
        "a cluster: point the operator's config_file (or KUBECONFIG) at its kubeconfig.",
        epilog=_ANNOTATIONS_EPILOG,
        formatter_class=_FakeKubeHelp,
    )
    fake.add_argument(
        "--kubeconfig", default=None, help="also write the kubeconfig (YAML-compatible JSON) here"
    )
    fake.add_argument(
        "--port", type=_port, default=0, help="listen on this port of 127.0.0.1 (default 0: any free port)"
    )
    _add_operating(sub)
    return parser


# -- operating it: status, check-config (one block) ------------------------------------------------


def _add_operating(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="what the finalizer is doing, read-only from its ledger (never writes or migrates)"
    )
    where = status.add_mutually_exclusive_group()
    where.add_argument(
        "--ledger-url", default=None, help="the ledger's URL (default: [kpo_finalizer] ledger_url)"
    )
    where.add_argument(
        "--state-dir", default=None, help="read DIR/ledger.sqlite3 (default: [kpo_finalizer] state_dir)"
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON (one line per report)")
    status.add_argument(
        "--watch",
        type=_positive_float,
        nargs="?",
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="print a new report every SECONDS (default 2) until Ctrl-C",
    )
    status.add_argument(
        "--airflow-db",
        action="store_true",
        help=(
            "also count FinalizingPodTrigger and FinalizingJobTrigger rows in Airflow's trigger table "
            "(its configured database)"
        ),
    )
    check = sub.add_parser(
        "check-config",
        help="validate [kpo_finalizer] as the triggerer reads it and test the ledger connection",
    )
    check.add_argument(
        "--skip-ledger", action="store_true", help="do not connect to the ledger (values only)"
    )


def _run_operating(args: argparse.Namespace) -> int:
    if args.command == "status":
        from finalizer.exceptions import ConfigurationError
        from finalizer.status_command import run_status
        from triggers.config_check import status_source

        try:
            url, stale_threshold = status_source(args.ledger_url, args.state_dir)
        except ConfigurationError as exc:
            print(f"kpo-finalizer status: {exc} (see kpo-finalizer check-config)", file=sys.stderr)
            return 2
        from triggers.config_check import airflow_trigger_counter

        counter = airflow_trigger_counter() if args.airflow_db else None
        return run_status(
            url, stale_threshold=stale_threshold, as_json=args.json, watch=args.watch, count_triggers=counter
        )
    from triggers.config_check import run_check_config

    return run_check_config(skip_ledger=args.skip_ledger)


# -- end of operating it ---------------------------------------------------------------------------


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    known = ("baseline", "classic", "finalizing")
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(known)}, got {text!r}")
    return names


def _add_bench_triggerer(bsub: Any) -> None:
    trig = bsub.add_parser(
        "triggerer", help="N deferred KPO tasks in one real airflow triggerer: start-up, steady, burst"
    )
    trig.add_argument("--tasks", type=_positive_int, required=True, help="N task instances per variant")
    trig.add_argument(
        "--xcom-bytes", type=_positive_int, default=1024, help="size of each pod's return.json (default 1024)"
    )
    trig.add_argument(
        "--variants",
        type=_variants,
        default=("baseline", "classic", "finalizing"),
        help="comma-separated of baseline (waits only), classic, finalizing (default: all three)",
    )
    trig.add_argument(
        "--shape",
        choices=("mapped", "dags", "wide"),
        default="mapped",
        help="one mapped task (default), N one-task DAGs, or one DAG with N tasks (Airflow's own limit)",
    )
    trig.add_argument(
        "--canaries",
        type=_positive_int,
        default=10,
        help="M canary triggers due during the burst (default 10)",
    )
    trig.add_argument(
        "--steady", type=_positive_float, default=60.0, help="seconds of steady state measured (default 60)"
    )
    trig.add_argument(
        "--burst-window",
        type=_non_negative_float,
        default=10.0,
        help="every base container ends within this many seconds (default 10)",
    )
    trig.add_argument(
        "--restart",
        action="store_true",
        help="also: SIGTERM the triggerer and start a new one while pods end",
    )
    trig.add_argument(
        "--json", dest="json_path", default="bench-triggerer.json", help="write the figures here"
    )
    trig.add_argument(
        "--plot",
        dest="plot_path",
        default=None,
        help="write the PNG timeline here (default: beside the JSON, as .png; needs matplotlib)",
    )
    trig.add_argument(
        "--keep", action="store_true", help="keep the temporary home (triggerer and trigger logs)"
    )


def _bench_triggerer(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from finalizer.bench import triggerer

    options = triggerer.Options(
        tasks=args.tasks,
        xcom_bytes=args.xcom_bytes,
        variants=args.variants,
        shape=args.shape,
        canaries=args.canaries,
        steady=args.steady,
        burst_window=args.burst_window,
        restart=args.restart,
        keep=args.keep,
    )
    plot_path = png_beside(args.json_path, args.plot_path)
    return triggerer.main(options, json_path=args.json_path, plot_path=plot_path, argv=argv)


def png_beside(json_path: str | None, plot_path: str | None) -> str | None:
    """The PNG a bench writes: the one asked for, else beside its JSON (``x.json`` → ``x.png``)."""
    if plot_path is not None or not json_path:
        return plot_path
    return str(Path(json_path).with_suffix(".png"))


# -- bench chaos (issue 13): the fault campaign ---------------------------------------------------


def _add_bench_chaos(bsub: Any) -> None:
    from finalizer.bench.chaos_scenarios import SCENARIOS

    chaos = bsub.add_parser(
        "chaos", help="fault campaign against a real airflow triggerer: kills, takeover, faults, outages"
    )
    chaos.add_argument(
        "--scenarios",
        type=lambda text: tuple(s.strip() for s in text.split(",") if s.strip()),
        default=tuple(SCENARIOS),
        help=f"comma-separated of {', '.join(SCENARIOS)} (default: all)",
    )
    chaos.add_argument(
        "--kills", type=_positive_int, default=30, help="SIGKILLs of the triggerer in 'kills' (default 30)"
    )
    chaos.add_argument("--seed", type=int, default=1, help="seed of every random choice and fault draw")
    chaos.add_argument(
        "--tasks", type=_positive_int, default=4, help="tasks per run (kills: at most 4 per kill; default 4)"
    )
    chaos.add_argument(
        "--fault-rate",
        type=_positive_float,
        default=0.2,
        help="share of Kubernetes requests faulted in 'kube-faults' (default 0.2)",
    )
    chaos.add_argument(
        "--ledger-deadline",
        type=_positive_float,
        default=5.0,
        help="the finalizer's ledger_deadline in seconds; outages last 0.4x and 2x it (default 5)",
    )
    chaos.add_argument(
        "--metadb-outage",
        type=_positive_float,
        default=8.0,
        help="seconds each metadata-DB outage lasts, refused then black-holed (default 8)",
    )
    chaos.add_argument("--json", dest="json_path", default="bench-chaos.json", help="write the results here")
    chaos.add_argument("--keep", action="store_true", help="keep the temporary home (triggerer, worker logs)")


def _bench_chaos(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from finalizer.bench import chaos

    options = chaos.Options(
        scenarios=args.scenarios,
        kills=args.kills,
        seed=args.seed,
        tasks=args.tasks,
        fault_rate=args.fault_rate,
        ledger_deadline=args.ledger_deadline,
        metadb_outage=args.metadb_outage,
        keep=args.keep,
    )
    try:
        options.check()
    except ValueError as exc:
        print(f"kpo-finalizer bench chaos: {exc}", file=sys.stderr)
        return 2
    return chaos.main(options, json_path=args.json_path, argv=argv)


def _bench_finalize(args: argparse.Namespace) -> int:
    """The pipeline benchmark (``finalizer.bench.finalize.run``), printed and saved like the others."""
    from finalizer.bench import finalize
    from finalizer.bench.report import command_line, flat_table, machine, write_json

    result: dict[str, Any] = finalize.run(
        pods=args.pods, latency_ms=args.latency_ms, concurrency=args.concurrency, event_loop=args.event_loop
    )
    payload = {"command": command_line(), "machine": machine(), **result}
    print(flat_table(result))
    print(f"JSON written to {write_json(args.json_path, payload)}")
    return 0


def _run_bench(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.bench == "api-load":
        from finalizer.bench import api_load

        return api_load.main(
            pods=args.pods, duration=args.duration, poll_interval=args.poll_interval, json_path=args.json_path
        )
    if args.bench == "finalize":
        return _bench_finalize(args)
    if args.bench == "triggerer":
        return _bench_triggerer(args, argv)
    if args.bench == "chaos":
        return _bench_chaos(args, argv)
    from finalizer.bench import e2e

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    return e2e.main(tasks=args.tasks, scenarios=scenarios, json_path=args.json_path, keep=args.keep)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from finalizer.demo import run_demo

            return run_demo(
                pods=args.pods, json_path=args.json_path, timeout=args.timeout, keep=args.keep, argv=argv
            )
        if args.command == "bench":
            return _run_bench(args, argv)
        if args.command in ("status", "check-config"):
            return _run_operating(args)
        if args.command == "fake-kube":
            from finalizer.demo.fake_kube_command import serve_fake_kube

            return serve_fake_kube(args.kubeconfig, args.port)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
