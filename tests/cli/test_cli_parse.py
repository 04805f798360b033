"""The command line parses what the README shows and rejects bad values with a clear message."""

from __future__ import annotations

import pytest

from finalizer.cli import build_parser, main


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
