"""Check what the built wheel and sdist ship (called by scripts/package-check).

The wheel must hold every tracked file of the three packages (finalizer/testing and the demo
too: ``kpo-finalizer demo`` runs from it), each package's ``py.typed``, the import guard at the
top level with its ``.pth`` line, and the ``kpo-finalizer`` entry point; and nothing else at the
top level (no tests, no examples: a top-level ``examples`` package would take that name in
site-packages). The sdist must hold the examples, the README and the tests.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import PurePosixPath

PACKAGES = ("api_client", "triggers", "finalizer")
#: Shipped at the top level instead of inside triggers/ (pyproject's force-include).
GUARD = {
    "triggers/_import_guard.py": "_kpo_finalizer_import_guard.py",
    "triggers/kpo_finalizer_import_guard.pth": "kpo_finalizer_import_guard.pth",
}


def tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *paths], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def check_wheel(path: str) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        scripts = wheel.read(entry_points).decode() if entry_points else ""
    problems = []
    for source in tracked(*PACKAGES):
        if "/__pycache__/" in source:
            continue
        shipped = GUARD.get(source, source)
        if shipped not in names:
            problems.append(f"wheel lacks {shipped} (from {source})")
    for source in GUARD:
        if source in names:
            problems.append(f"wheel ships {source} inside its package (the guard must be top level only)")
    for package in PACKAGES:
        if f"{package}/py.typed" not in names:
            problems.append(f"wheel lacks {package}/py.typed")
    allowed = {*PACKAGES, *GUARD.values()}
    for name in names:
        top = PurePosixPath(name).parts[0]
        if top not in allowed and not top.endswith(".dist-info"):
            problems.append(f"wheel ships {name} at the top level")
    if "kpo-finalizer = finalizer.cli:main" not in scripts:
        problems.append("wheel has no kpo-finalizer console script")
    return problems


def check_sdist(path: str) -> list[str]:
    with tarfile.open(path) as sdist:
        names = {PurePosixPath(*PurePosixPath(n).parts[1:]).as_posix() for n in sdist.getnames()}
    return [
        f"sdist lacks {source}"
        for source in tracked("examples", "tests", "README.md", "pyproject.toml", *PACKAGES)
        if "/__pycache__/" not in source and source not in names
    ]


def main(argv: list[str]) -> int:
    wheel, sdist = argv
    problems = check_wheel(wheel) + check_sdist(sdist)
    for problem in problems:
        print(f"package-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"package-check: wheel and sdist hold what they must ({wheel.rsplit('/', 1)[-1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
