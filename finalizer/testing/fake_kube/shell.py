"""A tiny command emulator: just the commands Airflow and the finalizer exec into pods.

Pure: ``run(argv or script, files)`` returns what the process would print, its exit code and
whether it stopped the container (the sidecar's ``trap "exit 0" INT``). Covered:

* the provider's XCom read, ``sh -c 'if [ -s F ]; then cat F; else echo __airflow_xcom_result_empty__; fi'``
* ``cat F``, ``echo …``, ``true``/``false``, ``exit N``, ``sleep N``, ``test -s F`` / ``[ -s F ]``
* sidecar stop: ``kill -s SIGINT 1``, ``kill -2 1``, ``kill -INT 1``, the provider's
  ``kill -2 $(pgrep -u $(id -u) -f 'sh')`` and its ``/proc/*/comm`` fallback loop.
Anything else: ``sh: CMD: not found``, exit 127 — a loud answer beats a silent success.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

EMPTY_XCOM_RESULT = "__airflow_xcom_result_empty__"
SHELLS = frozenset({"sh", "/bin/sh", "bash", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"})

_IF_S = re.compile(
    r"^if\s+\[\s+-s\s+(?P<file>\S+)\s+\];\s*then\s+(?P<then>.+?);\s*else\s+(?P<else>.+?);\s*fi;?$", re.S
)
_SIGINT = {"-2", "-INT", "-SIGINT"}


@dataclass(frozen=True, slots=True)
class Result:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    #: The command sent SIGINT to the container's PID 1 (the sidecar then exits 0).
    stops_container: bool = False
    #: Seconds the command runs before it ends (``sleep``); the session waits (or ends on stop).
    sleep: float = 0.0


def run_argv(argv: list[str], files: dict[str, bytes]) -> Result:
    """Run an exec ``command=`` list."""
    if not argv:
        return Result(stderr=b"no command given\n", exit_code=126)
    if argv[0] in SHELLS:
        if len(argv) >= 3 and argv[1] == "-c":
            return run_script(argv[2], files)
        return Result()  # a bare shell: the session reads stdin lines (see run_script)
    return _simple(argv, files)


def run_script(script: str, files: dict[str, bytes]) -> Result:
    """Run a ``sh -c`` script (or one stdin line): ``;``/``&&`` sequences of simple commands."""
    text = script.strip()
    if not text:
        return Result()
    if_match = _IF_S.match(text)
    if if_match:
        branch = "then" if files.get(if_match.group("file")) else "else"
        return run_script(if_match.group(branch), files)
    if text.startswith("for f in /proc/") and "kill -2" in text:
        return Result(stops_container=True)
    if "$(" in text:
        if re.search(r"\bkill\s+-(2|INT|SIGINT)\s+\$\(pgrep\b", text):
            return Result(stops_container=True)
        return Result(stderr=f"sh: unsupported substitution in {text!r}\n".encode(), exit_code=2)
    out = Result()
    for part in re.split(r"\s*(?:;|&&|\n)\s*", text):
        if not part:
            continue
        try:
            argv = shlex.split(part)
        except ValueError as exc:
            return Result(stdout=out.stdout, stderr=f"sh: syntax error: {exc}\n".encode(), exit_code=2)
        step = _simple(argv, files)
        out = Result(
            stdout=out.stdout + step.stdout,
            stderr=out.stderr + step.stderr,
            exit_code=step.exit_code,
            stops_container=out.stops_container or step.stops_container,
            sleep=out.sleep + step.sleep,
        )
        if step.exit_code != 0 or step.stops_container or argv[:1] == ["exit"]:
            break
    return out


def _simple(argv: list[str], files: dict[str, bytes]) -> Result:
    command, args = argv[0], argv[1:]
    if command in SHELLS and len(args) >= 2 and args[0] == "-c":
        return run_script(args[1], files)
    if command in ("cat", "/bin/cat"):
        out = b""
        for path in args:
            if path not in files:
                return Result(
                    stdout=out,
                    stderr=f"cat: can't open '{path}': No such file or directory\n".encode(),
                    exit_code=1,
                )
            out += files[path]
        return Result(stdout=out)
    if command == "echo":
        return Result(stdout=(" ".join(args) + "\n").encode())
    if command in ("true", ":"):
        return Result()
    if command == "false":
        return Result(exit_code=1)
    if command == "exit":
        return Result(exit_code=int(args[0]) if args else 0)
    if command == "sleep":
        return Result(sleep=float(args[0]) if args else 0.0)
    if command in ("test", "[") and len(args) >= 2 and args[0] == "-s":
        return Result(exit_code=0 if files.get(args[1]) else 1)
    if command in ("kill", "/bin/kill"):
        return _kill(args)
    return Result(stderr=f"sh: {command}: not found\n".encode(), exit_code=127)


def _kill(args: list[str]) -> Result:
    signal = "TERM"
    targets = list(args)
    if targets[:1] == ["-s"] and len(targets) >= 2:
        signal, targets = targets[1], targets[2:]
    elif targets and targets[0].startswith("-"):
        signal, targets = targets[0], targets[1:]
    if not targets:
        return Result(stderr=b"kill: usage: kill [-s sigspec | -signum] pid\n", exit_code=1)
    is_sigint = signal in _SIGINT or signal in ("INT", "SIGINT", "2")
    if targets == ["1"] and is_sigint:
        return Result(stops_container=True)
    if targets == ["1"]:
        # PID 1 ignores signals it has no handler for; the sidecar traps only INT.
        return Result()
    return Result(stderr=f"sh: kill: ({targets[0]}) - No such process\n".encode(), exit_code=1)
