"""``kpo-finalizer demo`` end to end (real triggerer, fake cluster), and its Ctrl-C clean-up.

Each test runs the real console script in a subprocess, as a newcomer would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

SCRIPT = [sys.executable, "-m", "finalizer.cli", "demo"]


def _sigint_as_in_a_terminal() -> None:
    """A test run started in the background (``cmd &``) inherits SIGINT *ignored*, and so would the demo.

    Reset it to the default, as a terminal's foreground process has it, so Ctrl-C is really delivered.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    )
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it holds no resources and is reaped by its parent.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(
        _alive(int(p.name))
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _pgid_of(int(p.name)) == pgid
    )


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_demo_small_run_all_ok(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    proc = subprocess.run(
        [*SCRIPT, "--pods", "5", "--json", str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    home = re.search(r"^home (\S+)$", proc.stdout, re.M)
    assert home, proc.stdout
    assert not Path(home.group(1)).exists(), "the temporary home must be removed"
    report = json.loads(out.read_text())
    assert report["summary"]["all_ok"] is True, proc.stdout[-4000:]
    assert proc.returncode == 0
    rows = {r["task_id"]: r for r in report["tasks"]}
    assert [rows[t]["state"] for t in sorted(rows)] == ["success", "skipped", "success", "failed", "success"]
    assert rows["pod_000"]["xcom"] == {"task": 0, "ok": True, "rows": [0, 0], "nested": {"k": "v"}}
    assert rows["pod_002"]["xcom"] == 2007
    # multiple_outputs: the whole dict and each key, values with their original JSON types
    assert rows["pod_004"]["xcom"] == {"unicode": "żółć ✓ 日本", "index": 4}
    assert rows["pod_004"]["key_xcoms"] == {"unicode": "żółć ✓ 日本", "index": 4}
    assert all(r["pod_deleted"] and r["completion_to_done_seconds"] is not None for r in rows.values())
    assert report["summary"]["completion_to_done_max"] >= report["summary"]["completion_to_done_p50"]
    assert "ALL OK" in proc.stdout


def _processes_under(home: Path) -> list[int]:
    """Processes whose working directory is inside ``home`` (the triggerer runs in its AIRFLOW_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(home)) and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    "interrupt_after",
    [
        r"airflow triggerer up \(pid (\d+)\)",  # the triggerer runs the deferred tasks
        r"fake Kubernetes API at ",  # while the triggerer is still being started
    ],
)
def test_demo_ctrl_c_leaves_nothing_behind(interrupt_after: str) -> None:
    proc = subprocess.Popen(
        [*SCRIPT, "--pods", "3"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # our own group: SIGINT goes to the demo only, as a terminal would
        preexec_fn=_sigint_as_in_a_terminal,
    )
    assert proc.stdout is not None
    home: Path | None = None
    triggerer_pid: int | None = None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    try:
        for line in proc.stdout:
            lines.append(line)
            if m := re.match(r"home (\S+)$", line.strip()):
                home = Path(m.group(1))
            if m := re.search(interrupt_after, line):
                triggerer_pid = int(m.group(1)) if m.groups() else None
                break
            assert time.monotonic() < deadline, "".join(lines)
        assert home is not None, "".join(lines)
        if triggerer_pid is not None:
            assert _alive(triggerer_pid)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted" in rest
    if triggerer_pid is not None:
        assert not _group_alive(triggerer_pid), "the triggerer (and its runner) must be gone"
    assert _processes_under(home) == []
    assert not home.exists()
