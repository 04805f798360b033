"""Every ``--help`` of ``kpo-finalizer`` reads as plain text and documents every flag.

The whole argparse tree of ``finalizer.cli`` is walked, so a command or flag added later is held
to the same rules: no reST markup (``double backticks``, ``:class:`` roles) reaches a terminal,
and every option and positional argument has a help line.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from finalizer.cli import build_parser, main

#: What Sphinx would render but a terminal shows as noise.
REST_MARKUP = re.compile(r"``|:(?:class|func|meth|mod|attr|data|exc|obj|ref|doc):`|`_\b")


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The command path of ``parser`` and of every subcommand below it."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, (*path, name))


def parser_at(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


COMMANDS = list(walk(build_parser()))


def test_the_tree_holds_every_known_command() -> None:
    """The walk itself is sound: it finds the commands the README documents."""
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "demo", "bench", "bench api-load", "bench finalize", "bench e2e", "bench triggerer"} <= names
    assert "fake-kube" in names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "kpo-finalizer")
def test_help_has_no_rest_markup(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: kpo-finalizer")
    found = REST_MARKUP.findall(text)
    assert not found, f"reST markup {found} in `kpo-finalizer {' '.join(path)} --help`:\n{text}"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "kpo-finalizer")
def test_every_flag_has_a_help_line(path: tuple[str, ...]) -> None:
    parser = parser_at(path)
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and (action.help is None or not action.help.strip())
    ]
    assert not missing, f"`kpo-finalizer {' '.join(path)}`: no help line for {missing}"


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=" ".join)
def test_every_subcommand_is_described_in_its_parent(path: tuple[str, ...]) -> None:
    parent = parser_at(path[:-1])
    sub = next(a for a in parent._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert (helps.get(path[-1]) or "").strip(), f"`kpo-finalizer {' '.join(path)}` has no help line"


def test_the_markup_check_catches_markup() -> None:
    """The rule itself: what it must flag, and plain text it must leave alone."""
    assert REST_MARKUP.search("serve ``FakeKube`` here")
    assert REST_MARKUP.search("see :class:`FinalizerConfig`")
    assert not REST_MARKUP.search("comma-separated: idle, contention (default both)")
    assert not REST_MARKUP.search("fake-kube/run-seconds  seconds the base container runs")
