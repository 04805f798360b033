"""The import-linter contracts cover modules nobody listed: a new module that breaks a rule is caught.

The contracts in ``pyproject.toml`` name whole packages and wildcards. This copies our three
packages and the contracts to a temporary directory, adds one new module per rule that breaks it,
and runs the real ``lint-imports`` there: every contract must report its probe, and the same copy
without probes must pass (so the probes, not the copy, break them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: A new module nobody listed anywhere, the import that breaks the rule, and the contract it breaks.
PROBES = {
    "finalizer/probe_layers.py": ("import triggers.policy", "Layers: triggers"),
    "api_client/probe_layers.py": ("import finalizer.jobs", "Layers: triggers"),
    "finalizer/probe_kit.py": ("import finalizer.testing.polling", "The finalizer core never imports"),
    "finalizer/testing/probe_kit.py": ("import finalizer.demo.scenario", "The kit: CLI over demo"),
    "finalizer/probe_kube.py": ("import kubernetes_asyncio.client", "Only finalizer.kube talks"),
    "triggers/probe_kube.py": ("import kubernetes.client", "Only finalizer.kube talks"),
    "finalizer/decisions/probe_pure.py": ("import finalizer.probe_core", "Decisions are pure"),
    "finalizer/decisions/probe_io.py": ("import time", "Decisions are pure"),
}


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for package in ("api_client", "triggers", "finalizer"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    (tree / "finalizer" / "probe_core.py").write_text('"""A new core module: pure today, but unlisted."""\n')
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the dev extra (import-linter)")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120
    )


def test_every_contract_catches_a_new_module_that_breaks_it(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    clean = _lint(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Contracts: 5 kept, 0 broken." in clean.stdout

    for path, (line, _) in PROBES.items():
        (tree / path).write_text(f'"""Probe."""\n\n{line}\n')
    broken = _lint(tree)
    report = broken.stdout
    assert broken.returncode != 0, report
    verdicts = re.findall(r"^(\S.*?) (KEPT|BROKEN)\b", report, flags=re.MULTILINE)
    assert len(verdicts) == 5, report  # one line per contract
    for path, (_, contract) in PROBES.items():
        assert [v for name, v in verdicts if name.startswith(contract)] == ["BROKEN"], (contract, report)
        assert path.removesuffix(".py").replace("/", ".") in report, (path, report)
