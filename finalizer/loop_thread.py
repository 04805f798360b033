"""The finalizer's own thread and event loop: an anyio blocking portal, and nothing else.

The trigger runner's loop must never block (a loop stalled 30 s loses every trigger), so the
finalizer's work runs on a loop of its own, in a thread. This module owns that thread: start it
(on uvloop when configured), start the main task, hand work to the loop from any thread, and
close it — from a thread other than its own, which is the one thing a portal cannot do itself.
A loop that is gone is reported as our ``FinalizerUnavailableError``, never as anyio's
``RuntimeError``.

Handing work over never waits for the finalizer's loop. anyio's ``start_task_soon`` blocks the
calling thread until the portal's loop has spawned the task, so a busy finalizer loop would stall
the trigger runner's loop with it. ``start_soon`` schedules the coroutine with
``asyncio.run_coroutine_threadsafe`` instead (one ``call_soon_threadsafe``), and every future it
handed out that is still pending when the loop goes away is cancelled, so no caller waits forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from finalizer.exceptions import FinalizerUnavailableError
from finalizer.loops import EventLoopChoice, loop_factory

log = logging.getLogger(__name__)
T = TypeVar("T")

_GONE = "the kpo-finalizer loop is not running"


class LoopThread:
    """One portal thread running ``main`` until it returns; then the thread closes itself."""

    def __init__(self, event_loop: EventLoopChoice, name: str = "kpo-finalizer") -> None:
        factory = loop_factory(event_loop)  # a missing uvloop fails here, before any thread
        options = {"loop_factory": factory} if factory is not None else None
        self._cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(
            "asyncio", options, name=name
        )
        self._portal: BlockingPortal | None = self._cm.__enter__()
        self._closed = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self.main: concurrent.futures.Future[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def start_main(self, main: Callable[..., Awaitable[None]], name: str) -> None:
        """Start ``main(task_status=…)`` and wait until it reports started (or raise its error)."""
        assert self._portal is not None
        try:
            self._loop = self._portal.call(asyncio.get_running_loop)
            self.main, _ = self._portal.start_task(main, name=name)
        except BaseException:
            self.close()
            raise
        # Runs on the loop thread when main ends; the portal cannot be closed from there.
        self.main.add_done_callback(
            lambda _: threading.Thread(target=self.close, name=f"{name}-close", daemon=True).start()
        )

    def start_soon(
        self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any
    ) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)`` on the loop without waiting for it; the future resolves from any thread."""
        loop = self._loop
        if loop is None or self.closed:
            raise FinalizerUnavailableError(_GONE)
        coro = fn(*args)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError as exc:  # the loop is closed
            coro.close()
            raise FinalizerUnavailableError(_GONE) from exc
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        if self.closed:  # closed meanwhile: close() may have missed this one
            future.cancel()
        return future

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T | None:
        """Run ``fn(*args)`` on the loop and wait for it; None when the loop already stopped."""
        if self._portal is None or self.closed:
            return None
        with contextlib.suppress(RuntimeError):
            return self._portal.call(fn, *args)
        return None

    def stop_now(self) -> None:
        """Stop the loop under whatever runs on it (tests: the foundation dying under waiters)."""
        portal = self._portal
        if portal is not None:
            portal.call(portal.stop, True)

    def close(self) -> None:
        """Close the portal and join its thread (idempotent; never from the loop's own thread)."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._cm.__exit__(None, None, None)
        except BaseException as exc:
            log.warning("kpo-finalizer: error while closing its loop: %r", exc)
        self._portal = None
        for future in list(self._pending):  # scheduled, but the loop ended before running them
            future.cancel()


__all__ = ["LoopThread"]
