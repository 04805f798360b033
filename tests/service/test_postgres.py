"""Two finalizer instances on one PostgreSQL ledger, and a ledger that goes away mid-run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg2
import pytest

from finalizer.config import FinalizerConfig
from finalizer.exceptions import JobLostError, LedgerUnavailableError
from finalizer.jobs import JobSpec, OutcomeKind
from finalizer.service import Finalizer
from tests.pipeline.harness import NS, World, fast_config
from tests.support.polling import eventually


@asynccontextmanager
async def running(config: FinalizerConfig, world: World, url: str) -> AsyncIterator[Finalizer]:
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(config, world.wiring(url)))
    try:
        yield finalizer
    finally:
        await finalizer.adrain(2.0)


def _sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def _owner(url: str, spec: JobSpec) -> str | None:
    rows = _sql(url, "SELECT owner FROM kpof_jobs WHERE key = %s", spec.key)
    return rows[0][0] if rows else None


@pytest.mark.anyio
async def test_two_instances_never_double_process_then_adopt_and_fence(
    world: World, make_postgres_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_postgres_database("kpof_h5")
    config = fast_config(tmp_path, heartbeat_interval=0.2, stale_threshold=1.5, adopt_interval=0.1)
    async with running(config, world, url) as a, running(config, world, url) as b:
        # 1. Both alive: the same job submitted to both is processed once.
        shared = world.make_job(xcom='"once"')
        first = asyncio.ensure_future(a.submit(shared))
        await eventually(lambda: _owner(url, shared) is not None)
        second = asyncio.ensure_future(b.submit(shared))
        world.kube.terminate(NS, shared.pod.name, exit_code=0)
        out_a, out_b = await asyncio.gather(first, second)
        assert out_a == out_b
        assert out_a.kind is OutcomeKind.SUCCESS
        assert world.xcom_reads(shared) == 1
        assert world.deletes(shared) == 1
        assert world.xcom(shared) == "once"

        # A live instance's waiting job is never adopted, however long it waits.
        parked = world.make_job(xcom='"adopted"')
        waiter = asyncio.ensure_future(a.submit(parked))
        await eventually(lambda: _owner(url, parked) == a.instance_id)
        await anyio.sleep(2 * config.stale_threshold)  # the stimulus: time past the stale threshold
        assert _owner(url, parked) == a.instance_id

        # 2. A's heartbeat backdated in SQL: B adopts A's job (epoch + 1).
        def backdate() -> None:
            _sql(
                url,
                "UPDATE kpof_instances SET heartbeat = now() - interval '1 hour' WHERE id = %s",
                a.instance_id,
            )

        await eventually(lambda: _owner(url, parked) == b.instance_id, between=backdate)
        epoch = _sql(url, "SELECT epoch FROM kpof_jobs WHERE key = %s", parked.key)[0][0]
        assert epoch == 2
        await eventually(lambda: b.health().watching >= 1)

        # 3. The pod ends: both see it; A is fenced out at its first write (the payload write,
        # after its read-only XCom exec: it may read, it never pushes, stops or deletes), B finishes.
        world.kube.terminate(NS, parked.pod.name, exit_code=0)
        with pytest.raises(JobLostError):
            await waiter
        outcome = await b.submit(parked)  # joins B's running job
        assert outcome.kind is OutcomeKind.SUCCESS
        assert world.xcom(parked) == "adopted"
        assert 1 <= world.xcom_reads(parked) <= 2
        assert world.deletes(parked) == 1  # one DELETE request in all: A never sent one
        assert world.sidecar_stops(parked) == 1
        assert _owner(url, parked) == b.instance_id


class _Proxy:
    """A TCP proxy to PostgreSQL that the test can cut: the ledger becomes unreachable."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()


@pytest.mark.anyio
async def test_ledger_lost_mid_run_fails_every_waiter_within_the_deadline(
    world: World, make_postgres_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_postgres_database("kpof_h5")
    proxy = _Proxy(5432)
    await proxy.start()
    proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    config = fast_config(
        tmp_path, ledger_deadline=1.5, heartbeat_interval=0.2, stale_threshold=1.5, call_timeout=1.0
    )
    finalizer = await anyio.to_thread.run_sync(lambda: Finalizer.launch(config, world.wiring(proxied)))
    try:
        spec = world.make_job(xcom="1")
        waiter = asyncio.ensure_future(finalizer.submit(spec))
        await eventually(lambda: finalizer.health().watching == 1)
        await proxy.cut()
        cut_at = time.monotonic()
        with pytest.raises(LedgerUnavailableError):
            await waiter
        assert time.monotonic() - cut_at < 10 * config.ledger_deadline  # not the default 60 s, not never
        await eventually(lambda: not finalizer.health().running)
        assert finalizer.health().failure is not None
        with pytest.raises(LedgerUnavailableError):
            await finalizer.submit(world.make_job())
        assert world.pod(spec) is not None
        assert world.deletes(spec) == 0
    finally:
        await finalizer.adrain(1.0)
