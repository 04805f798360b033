"""``kpo-finalizer fake-kube``: listens on the port asked for, documents every annotation it obeys.

The command runs as a user runs it (a subprocess of the real CLI); the kubeconfig it writes is
used by the unmodified ``kubernetes`` client, which creates a scripted pod the fake kubelet ends.
"""

from __future__ import annotations

import ast
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from finalizer.demo.fake_kube_command import annotations_help
from finalizer.testing.fake_kube import kubelet
from finalizer.testing.polling import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "finalizer.cli", "fake-kube", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, kubeconfig = free_port(), tmp_path / "kube.json"
    proc = start("--port", str(port), "--kubeconfig", str(kubeconfig))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"fake Kubernetes API at http://127.0.0.1:{port} ")
        assert proc.stdout.readline().strip() == f"kubeconfig written to {kubeconfig}"
        yield port, kubeconfig
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out.strip().endswith("stopping")


def test_serves_on_the_port_and_runs_a_scripted_pod(served: tuple[int, Path]) -> None:
    from kubernetes import client, config

    port, kubeconfig = served
    assert (
        json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{port}"
    )
    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name="scripted",
            annotations={"fake-kube/run-seconds": "0.1", "fake-kube/exit-code": "3"},
        ),
        spec=client.V1PodSpec(containers=[client.V1Container(name="base", image="alpine:3")]),
    )
    api.create_namespaced_pod("default", pod)

    def terminated() -> object:
        status = api.read_namespaced_pod("scripted", "default").status
        states = [s.state.terminated for s in status.container_statuses or []]
        return states[0] if states and states[0] else None

    ended = wait_for(terminated, 30, 0.05, "the fake kubelet to end the base container")
    assert ended.exit_code == 3


def test_a_taken_port_is_refused_with_a_clear_message(served: tuple[int, Path]) -> None:
    port, _ = served
    proc = start("--port", str(port))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"fake-kube: cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["-1", "65536", "http"])
def test_a_bad_port_is_refused(value: str) -> None:
    proc = start("--port", value)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--port" in err


def annotations_read_by_the_kubelet() -> set[str]:
    """Keys the kubelet's code reads from ``notes``: ``notes["k"]``, ``notes.get("k")``, ``"k" in notes``."""
    tree = ast.parse(Path(kubelet.__file__).read_text())
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_notes(node.value) and isinstance(node.slice, ast.Constant):
            keys.add(str(node.slice.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _is_notes(node.func.value)
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(str(node.args[0].value))
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.ops[0], ast.In)
            and _is_notes(node.comparators[0])
            and isinstance(node.left, ast.Constant)
        ):
            keys.add(str(node.left.value))
    return keys


def _is_notes(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "notes"


def test_every_annotation_the_kubelet_reads_is_documented() -> None:
    read = annotations_read_by_the_kubelet()
    assert "run-seconds" in read  # the scan itself works
    assert read == set(kubelet.ANNOTATIONS)


def test_help_and_readme_list_every_annotation() -> None:
    text = annotations_help()
    readme = README.read_text()
    for key, meaning in kubelet.ANNOTATIONS.items():
        assert f"{kubelet.PREFIX}{key}  " in text
        assert meaning in text
        assert f"| `{kubelet.PREFIX}{key}` |" in readme, f"README lacks {kubelet.PREFIX}{key}"


def test_the_documented_run_seconds_default_is_the_commands() -> None:
    default = kubelet.AutoKubelet.__dataclass_fields__["run_seconds"].default
    assert f"(default {default:g})" in kubelet.ANNOTATIONS["run-seconds"]
