"""The command line parses what the README shows and rejects bad values with a clear message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from finalizer.cli import build_parser, main, png_beside


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["demo"], {"command": "demo", "pods": 20, "json_path": None, "keep": False}),
        (["demo", "--pods", "50", "--json", "out.json"], {"pods": 50, "json_path": "out.json"}),
        (
            ["bench", "api-load", "--pods", "500", "--duration", "60"],
            {"bench": "api-load", "pods": 500, "duration": 60.0, "poll_interval": 2.0},
        ),
        (
            ["bench", "finalize", "--pods", "1000", "--latency-ms", "20", "--concurrency", "64"],
            {"bench": "finalize", "pods": 1000, "latency_ms": 20.0, "concurrency": 64},
        ),
        (["bench", "e2e", "--tasks", "8"], {"bench": "e2e", "tasks": 8, "scenarios": "idle,contention"}),
        (["fake-kube"], {"command": "fake-kube", "kubeconfig": None}),
    ],
)
def test_parses(argv: list[str], expected: dict[str, object]) -> None:
    args = vars(build_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--pods", "0"], "must be at least 1"),
        (["demo", "--pods", "many"], "expected a whole number"),
        (["bench", "api-load", "--duration", "-1"], "must be 0 or more"),
        (["bench", "api-load", "--duration", "0"], "must be more than 0"),
        (["bench", "finalize", "--latency-ms", "nan"], "must be 0 or more"),
        (["bench"], "required"),
        ([], "required"),
    ],
)
def test_rejects(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "bench", "fake-kube"):
        assert command in out


def test_fake_kube_serves_until_ctrl_c(tmp_path: Path) -> None:
    """``kpo-finalizer fake-kube`` answers the Kubernetes API and stops cleanly on SIGINT."""
    config = tmp_path / "kubeconfig.json"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "finalizer.cli", "fake-kube", "--kubeconfig", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "fake Kubernetes API at http://127.0.0.1:" in first
        assert "kubeconfig written" in proc.stdout.readline()
        server = json.loads(config.read_text())["clusters"][0]["cluster"]["server"]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            f"{server}/api/v1/namespaces/default/pods", headers={"Authorization": "Bearer fake-kube-token"}
        )
        with opener.open(request, timeout=10) as response:
            assert json.loads(response.read())["kind"] == "PodList"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("json_path", "plot_path", "expected"),
    [
        ("bench-triggerer.json", None, "bench-triggerer.png"),
        ("out/run.json", None, "out/run.png"),
        ("run.json", "elsewhere.png", "elsewhere.png"),
        (None, None, None),
        ("", None, None),
    ],
)
def test_bench_triggerer_writes_its_png_beside_the_json_unless_told(
    json_path: str | None, plot_path: str | None, expected: str | None
) -> None:
    assert png_beside(json_path, plot_path) == expected
