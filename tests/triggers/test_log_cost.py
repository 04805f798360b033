"""What a 10 MiB container log costs on its way to the task log: memory stays bounded, CPU measured.

The fake API server runs in a child process (its own copy of the log is not ours to count); the
finalizer's side (``ContainerLog`` over a real ``KubeCluster``) runs on its own loop in a thread,
the trigger's side (``write_lines``) on the test's loop, writing every line to a logger whose
handler formats it (as the triggerer's handler does before its socket write) into a null stream.

Figures (README "How it differs from the classic path"): ``pytest tests/triggers/test_log_cost.py -s``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from finalizer.container_log import ContainerLog
from finalizer.jobs import PodRef
from finalizer.kube import cluster_from_kubeconfig
from finalizer.log_channel import LogChannel
from finalizer.testing import FakeKube
from triggers.task_log import write_lines

pytestmark = pytest.mark.anyio

LOG_BYTES = 10 * 1024 * 1024
LINE = "2026-12-02 10:00:00,000 INFO worker: processed record {i:08d} " + "x" * 40  # ~100 bytes
NS = "default"


def _serve(conn: Connection) -> None:
    """Child process: a fake API server with one finished pod holding a 10 MiB base log."""
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    with FakeKube.in_thread() as kube:
        pod = kube.create_pod(NS, name="big")
        kube.start(NS, "big")
        count = LOG_BYTES // (len(LINE.format(i=0)) + 1)
        kube.set_logs(NS, "big", "base", [LINE.format(i=i) for i in range(count)])
        kube.terminate(NS, "big", exit_code=0)
        conn.send((kube.kubeconfig, pod["metadata"]["uid"], count))
        conn.recv()  # until the parent is done


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[dict[str, Any], str, int]]:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    try:
        assert parent.poll(60), "the fake API server did not start"
        yield parent.recv()
    finally:
        parent.send("done")
        proc.join(10)


class Finalizer:
    """The finalizer's loop, in its own thread; measures the CPU time of its work there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._cluster: Any = None
        self._stack: Any = None

    def _run(self, coro: Any) -> asyncio.Future[Any]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def open(self, kubeconfig: dict[str, Any]) -> None:
        """The cluster client, built once as the finalizer does (not part of a log's cost)."""

        async def build() -> None:
            self._stack = cluster_from_kubeconfig(kubeconfig)
            self._cluster = await self._stack.__aenter__()

        await self._run(build())

    async def ship(self, uid: str, channel: LogChannel) -> float:
        async def work() -> float:
            started = time.thread_time()
            pod = PodRef(namespace=NS, name="big", uid=uid)
            await ContainerLog(self._cluster, pod, channel, LOG_BYTES * 2).ship_all()
            channel.end()
            return time.thread_time() - started

        return float(await self._run(work()))

    def close(self) -> None:
        if self._stack is not None:
            asyncio.run_coroutine_threadsafe(self._stack.__aexit__(None, None, None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def task_logger() -> logging.Logger:
    logger = logging.getLogger("tests.log_cost.task")
    logger.propagate = False
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed below
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] {%(filename)s:%(lineno)d} %(levelname)s - %(message)s")
    )
    logger.handlers = [handler]
    return logger


@pytest.fixture
async def finalizer(served: tuple[dict[str, Any], str, int]) -> Any:
    side = Finalizer()
    await side.open(served[0])
    yield side
    side.close()


async def transfer(finalizer: Finalizer, uid: str) -> tuple[int, float, float, float, float]:
    """Lines written, finalizer CPU s, writer CPU s, wall s, longest writer step without a loop turn (s)."""
    logger = task_logger()
    channel = LogChannel()
    longest = 0.0
    stop = asyncio.Event()

    async def lag() -> None:  # how long the test loop (the runner's) went without a turn
        nonlocal longest
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0)
            longest = max(longest, time.perf_counter() - before)

    probe = asyncio.create_task(lag())
    try:
        wall = time.perf_counter()
        writer_cpu = time.thread_time()
        shipped = asyncio.create_task(finalizer.ship(uid, channel))
        written = await write_lines(channel, logger)
        writer_cpu = time.thread_time() - writer_cpu
        finalizer_cpu = await shipped
        wall = time.perf_counter() - wall
    finally:
        stop.set()
        await probe
        for handler in logger.handlers:
            handler.close()
    return written, finalizer_cpu, writer_cpu, wall, longest


async def test_a_10_mib_log_costs_bounded_memory(
    served: tuple[dict[str, Any], str, int], finalizer: Finalizer
) -> None:
    """Bounded by the HTTP client's read buffer, not by the log: kubernetes_asyncio reads with a
    2 MiB ``read_bufsize``, so aiohttp pauses the socket once 4 MiB wait unread; our own part
    (one 32 KiB batch, four chunks in the channel) is a few hundred KiB."""
    _, uid, count = served
    await transfer(finalizer, uid)  # warm: imports, the first connection
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        written, *_ = await transfer(finalizer, uid)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == count
    extra = peak - base
    print(
        f"\n[kpo-finalizer log cost] {LOG_BYTES / 2**20:.0f} MiB, {count} lines: "
        f"peak Python memory +{extra / 2**20:.2f} MiB"
    )
    assert extra < 6 * 2**20, f"a 10 MiB log must not sit in memory: peak +{extra / 2**20:.2f} MiB"


async def test_a_10_mib_log_cpu_and_loop_turns(
    served: tuple[dict[str, Any], str, int], finalizer: Finalizer
) -> None:
    _, uid, count = served
    await transfer(finalizer, uid)  # warm
    written, finalizer_cpu, writer_cpu, wall, longest = await transfer(finalizer, uid)
    assert written == count
    print(
        f"\n[kpo-finalizer log cost] {LOG_BYTES / 2**20:.0f} MiB, {count} lines in {wall:.2f}s: "
        f"finalizer loop CPU {finalizer_cpu:.2f}s, runner loop CPU {writer_cpu:.2f}s "
        f"({writer_cpu / count * 1e6:.1f} us/line), longest runner step {longest * 1000:.1f} ms"
    )
    assert longest < 0.2, "the runner's loop must get a turn between chunks (Airflow warns at 0.2 s)"
