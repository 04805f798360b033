"""Throughput of the fake API server itself (not a test): ``python -m tests.fake_kube.bench_fake_kube``.

Measures, on one event loop: lifecycle mutations with N watchers streaming every event; LIST and GET
latency with 1,000 pods; and 1,000 per-pod (``metadata.name``) watches. Over real sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import aiohttp

from finalizer.testing import FakeKube
from tests.support.polling import eventually

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


async def shared_watches(pods: int, watchers: int) -> None:
    async with FakeKube() as kube, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        wanted = 4 * pods  # ADDED, scheduled, running, terminated

        async def watch() -> int:
            seen = 0
            params = {"watch": "1", "resourceVersion": str(kube.resource_version)}
            async with session.get(f"{kube.url}/api/v1/namespaces/default/pods", params=params) as resp:
                async for _ in resp.content:
                    seen += 1
                    if seen == wanted:
                        break
            return seen

        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        await eventually(lambda: len(kube.cluster.store.watchers) == watchers, within=60)
        started = time.perf_counter()
        for index in range(pods):
            kube.create_pod("default", name=f"p{index}")
            kube.start("default", f"p{index}")
            kube.terminate("default", f"p{index}")
        mutations = time.perf_counter() - started
        assert all(seen == wanted for seen in await asyncio.gather(*tasks))
        delivered = time.perf_counter() - started
        print(
            f"{pods} pods x 4 changes, {watchers} shared watches: mutations {mutations * 1e3:.0f} ms "
            f"({mutations / wanted * 1e6:.0f} us/change), all delivered {delivered * 1e3:.0f} ms "
            f"({wanted * watchers / delivered:,.0f} events/s)"
        )
        started = time.perf_counter()
        for _ in range(10):
            async with session.get(f"{kube.url}/api/v1/namespaces/default/pods") as resp:
                body = await resp.read()
        listing = (time.perf_counter() - started) / 10
        started = time.perf_counter()
        for index in range(200):
            async with session.get(f"{kube.url}/api/v1/namespaces/default/pods/p{index}") as resp:
                await resp.read()
        get = (time.perf_counter() - started) / 200
        items = len(json.loads(body)["items"])
        print(
            f"LIST {items} pods: {listing * 1e3:.0f} ms ({len(body) / 1e6:.1f} MB); GET: {get * 1e3:.2f} ms"
        )


async def pinned_watches(pods: int) -> None:
    async with FakeKube() as kube, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for index in range(pods):
            kube.create_pod("default", name=f"p{index}")
        rv = str(kube.resource_version)

        async def watch(index: int) -> None:
            params = {"watch": "1", "resourceVersion": rv, "fieldSelector": f"metadata.name=p{index}"}
            async with session.get(f"{kube.url}/api/v1/namespaces/default/pods", params=params) as resp:
                seen = 0
                async for _ in resp.content:
                    seen += 1
                    if seen == 3:
                        return

        tasks = [asyncio.create_task(watch(index)) for index in range(pods)]
        await eventually(lambda: len(kube.cluster.store.watchers) == pods, within=60)
        started = time.perf_counter()
        for index in range(pods):
            kube.start("default", f"p{index}")
            kube.terminate("default", f"p{index}")
        mutations = time.perf_counter() - started
        await asyncio.gather(*tasks)
        delivered = time.perf_counter() - started
        print(
            f"{pods} per-pod watches, {3 * pods} changes: mutations {mutations * 1e3:.0f} ms, "
            f"all delivered {delivered * 1e3:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(shared_watches(args.pods, args.watchers))
    asyncio.run(pinned_watches(args.pods))


if __name__ == "__main__":
    main()
