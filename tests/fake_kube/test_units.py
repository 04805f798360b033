"""Pure pieces, table by table: ParseBool, selectors, the command emulator, merge patch."""

from __future__ import annotations

import pytest

from finalizer.testing.fake_kube import shell
from finalizer.testing.fake_kube.routes import merge_patch
from finalizer.testing.fake_kube.selectors import SelectorError, parse_field_selector, parse_label_selector
from finalizer.testing.fake_kube.wire import parse_bool

FILES = {"/airflow/xcom/return.json": b'{"a": 1}', "/empty": b""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(t, True) for t in ("1", "t", "T", "TRUE", "true", "True")],
        *[(f, False) for f in ("0", "f", "F", "FALSE", "false", "False")],
        (None, None),
        ("", None),
    ],
)
def test_parse_bool(text: str | None, expected: bool | None) -> None:
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["yes", "tRUE", "2", " true"])
def test_parse_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="ParseBool"):
        parse_bool(text)


LABELS = {"app": "x", "tier": "db", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=x", True),
        ("app==x", True),
        ("app=y", False),
        ("app!=y", True),
        ("missing!=y", True),
        ("app in (x,y)", True),
        ("app in (y)", False),
        ("app notin (y, z)", True),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("app=x,tier=db,env in (prod)", True),
        ("app=x,tier=web", False),
        ("airflow.apache.org/kpo=true", False),
    ],
)
def test_label_selector(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize("selector", ["a b", "a=b,", "=x", "a in x"])
def test_label_selector_rejects(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("metadata.name=p", True),
        ("metadata.name==p", True),
        ("metadata.name!=p", False),
        ("status.phase=Running,metadata.namespace=default", True),
        ("spec.nodeName=", False),
    ],
)
def test_field_selector(selector: str, matches: bool) -> None:
    fields = {
        "metadata.name": "p",
        "metadata.namespace": "default",
        "status.phase": "Running",
        "spec.nodeName": "n1",
    }
    assert parse_field_selector(selector).matches(fields) is matches


@pytest.mark.parametrize("selector", ["status.podPhase=x", "metadata.name"])
def test_field_selector_rejects(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(selector)


XCOM_SCRIPT = (
    "if [ -s /airflow/xcom/return.json ]; then cat /airflow/xcom/return.json; "
    "else echo __airflow_xcom_result_empty__; fi"
)


@pytest.mark.parametrize(
    ("argv", "files", "stdout", "exit_code", "stops"),
    [
        (["sh", "-c", XCOM_SCRIPT], FILES, b'{"a": 1}', 0, False),
        (["/bin/sh", "-c", XCOM_SCRIPT], {}, b"__airflow_xcom_result_empty__\n", 0, False),
        (
            ["sh", "-c", XCOM_SCRIPT.replace("/airflow/xcom/return.json", "/empty")],
            FILES,
            b"__airflow_xcom_result_empty__\n",
            0,
            False,
        ),
        (["cat", "/airflow/xcom/return.json"], FILES, b'{"a": 1}', 0, False),
        (["cat", "/nope"], FILES, b"", 1, False),
        (["kill", "-s", "SIGINT", "1"], {}, b"", 0, True),
        (["kill", "-s", "INT", "1"], {}, b"", 0, True),
        (["kill", "-2", "1"], {}, b"", 0, True),
        (["kill", "-INT", "1"], {}, b"", 0, True),
        (["kill", "1"], {}, b"", 0, False),  # SIGTERM: PID 1 has no handler, nothing happens
        (["kill", "-2", "42"], {}, b"", 1, False),
        (["sh", "-c", "kill -2 $(pgrep -u $(id -u) -f 'sh')"], {}, b"", 0, True),
        (["sh", "-c", "echo hi && exit 4"], {}, b"hi\n", 4, False),
        (["sh", "-c", "true; echo ok"], {}, b"ok\n", 0, False),
        (["sh", "-c", "false; echo never"], {}, b"", 1, False),
        (["sh", "-c", "test -s /airflow/xcom/return.json"], FILES, b"", 0, False),
        (["sh", "-c", "[ -s /empty ]"], FILES, b"", 1, False),
        (["python", "-c", "1"], {}, b"", 127, False),
        (["sh", "-c", "echo $(date)"], {}, b"", 2, False),
        ([], {}, b"", 126, False),
    ],
)
def test_shell(argv: list[str], files: dict[str, bytes], stdout: bytes, exit_code: int, stops: bool) -> None:
    result = shell.run_argv(argv, files)
    assert result.stdout == stdout
    assert result.exit_code == exit_code
    assert result.stops_container is stops


def test_provider_fallback_kill_loop_stops() -> None:
    script = (
        "for f in /proc/[0-9]*/comm; do "
        '[ -O $f ] && read c < $f && [ "$c" = "sh" ] && pid=${f%/comm} && kill -2 ${pid##*/}; done'
    )
    assert shell.run_script(script, {}).stops_container


def test_sleep_is_reported() -> None:
    assert shell.run_argv(["sleep", "2.5"], {}).sleep == 2.5


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": 1}, {"a": None}, {}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}, {"a": {"c": 2, "d": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"b": {"c": None}}, {"a": 1, "b": {}}),
    ],
)
def test_merge_patch(
    target: dict[str, object], patch: dict[str, object], expected: dict[str, object]
) -> None:
    assert merge_patch(target, patch) == expected
