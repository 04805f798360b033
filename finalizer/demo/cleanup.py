"""Leave nothing behind: a temporary home, SIGTERM treated like Ctrl-C, and a LIFO of undo steps.

The demo starts a fake API server thread and an ``airflow triggerer`` process group; whatever
happens (normal end, exception, Ctrl-C, ``kill``), every one of them is undone in reverse order,
with SIGINT ignored while that runs so an impatient second Ctrl-C cannot cut the clean-up short.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind exactly as for Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


class Cleanup:
    """Undo steps run last-in first-out; failures are reported, never allowed to skip later steps."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, undo: Callable[[], object]) -> None:
        self._steps.append((what, undo))

    def run(self) -> list[str]:
        """Run every step; returns the descriptions of steps that failed."""
        failed: list[str] = []
        while self._steps:
            what, undo = self._steps.pop()
            try:
                undo()
            except BaseException:  # clean-up must go on: report and continue
                failed.append(what)
                print(f"clean-up step failed: {what}", file=sys.stderr)
                traceback.print_exc()
        return failed


@contextlib.contextmanager
def demo_session(*, keep: bool, prefix: str = "kpo-finalizer-demo-") -> Iterator[tuple[Path, Cleanup]]:
    """A temporary home and a ``Cleanup`` that runs on any exit (SIGTERM included).

    With ``keep`` the home (logs, databases) survives and its path is printed.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    cleanup = Cleanup()
    main = threading.current_thread() is threading.main_thread()  # signals: main thread only
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated) if main else None
    try:
        yield home, cleanup
    finally:
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            cleanup.run()
            if keep:
                print(f"kept {home}")
            else:
                shutil.rmtree(home, ignore_errors=True)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous_int)
                signal.signal(signal.SIGTERM, previous_term)
