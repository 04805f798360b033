"""Run an async server on its own event loop in a daemon thread (``FakeKube.in_thread``).

Start-up errors surface in the caller; exit closes the server on its loop, stops the loop and joins
the thread, so no thread or socket outlives the ``with`` block.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds a cross-thread call (start, stop, helper) may take before the caller gives up.
CALL_TIMEOUT = 30.0


@contextmanager
def serve_in_thread(
    open_: Callable[[], Coroutine[Any, Any, Any]],
    close: Callable[[], Coroutine[Any, Any, None]],
    name: str = "fake-kube",
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> Iterator[asyncio.AbstractEventLoop]:
    loop = (loop_factory or asyncio.new_event_loop)()
    ready: concurrent.futures.Future[None] = concurrent.futures.Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(open_())
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        loop.run_forever()

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    try:
        ready.result(timeout=CALL_TIMEOUT)
        yield loop
    finally:
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=CALL_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=CALL_TIMEOUT)
        loop.close()
