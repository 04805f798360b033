"""``kpo-finalizer`` command line: ``demo``, ``bench …``, ``fake-kube``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpo-finalizer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run N KPO tasks through a real airflow triggerer on a fake cluster")
    demo.add_argument("--pods", type=int, default=20)
    demo.add_argument("--json", dest="json_path", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        print("kpo-finalizer demo: not built yet (see issue 6)")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
