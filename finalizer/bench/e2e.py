"""``kpo-finalizer bench e2e``: the classic deferrable KPO against ``FinalizingKubernetesPodOperator``.

Not built yet: see the README's "Benchmarks" section for what exists.
"""

from __future__ import annotations

import sys


def main(*, tasks: int, scenarios: list[str], json_path: str) -> int:
    print("bench e2e is not built yet", file=sys.stderr)
    return 2
