"""Builds the running finalizer's foundation from config: ledger, cluster clients, XCom sink.

Runs on the finalizer's own loop, inside the service's exit stack, so everything it opens is
closed in ``finally`` however the loop ends. The XCom store comes from the caller: inside
``airflow triggerer`` the supervisor-backed store, elsewhere the HTTP client's ``client.xcoms``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

from api_client.exceptions import XComNotFoundError
from api_client.store import XComRef, XComStore
from finalizer.config import FinalizerConfig
from finalizer.jobs import JobSpec
from finalizer.kube.clients import KubeClients
from finalizer.kube.config import KubeSettings
from finalizer.ledger import Ledger
from finalizer.retry import classify
from finalizer.seams import ClusterOps, Foundation, TaskState, Wiring


class StoreSink:
    """``finalizer.seams.XComSink`` over an ``api_client.XComStore``: refs from the job's TI."""

    def __init__(self, store: XComStore) -> None:
        self.store = store

    @staticmethod
    def ref(spec: JobSpec, key: str) -> XComRef:
        ti = spec.ti
        return XComRef(
            dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, key=key, map_index=ti.map_index
        )

    async def set(self, spec: JobSpec, key: str, value: Any, *, mapped_length: int | None = None) -> None:
        await self.store.set(self.ref(spec, key), value, mapped_length=mapped_length)

    async def get(self, spec: JobSpec, key: str) -> Any:
        try:
            return await self.store.get(self.ref(spec, key))
        except XComNotFoundError:
            return None


async def connect_ledger(config: FinalizerConfig) -> Ledger:
    """The configured ledger; the default SQLite file's directory is created on first use."""
    url = config.resolved_ledger_url
    if not config.ledger_url:
        await anyio.to_thread.run_sync(lambda: Path(config.state_dir).mkdir(parents=True, exist_ok=True))
    return await Ledger.connect(
        url,
        connect_timeout=config.ledger_deadline,
        operation_timeout=min(config.call_timeout, config.ledger_deadline),
        stale_threshold=config.stale_threshold,
    )


def default_wiring(
    xcom_store: XComStore, *, kube_settings: KubeSettings | None = None, task_state: TaskState | None = None
) -> Wiring:
    """The production foundation: ``Ledger.connect``, one ``KubeClients`` pool, ``xcom_store``;
    ``task_state`` (Airflow's view of a TI) lets adopters leave tasks that went to a worker."""

    async def wire(config: FinalizerConfig, stack: AsyncExitStack) -> Foundation:
        ledger = await connect_ledger(config)
        stack.push_async_callback(ledger.aclose)
        # A job makes one Kubernetes call at a time: as many calls in flight as job slots.
        clients = KubeClients(kube_settings or KubeSettings(max_concurrency=config.concurrency_per_cluster))
        stack.push_async_callback(clients.aclose)

        async def cluster_for(spec: JobSpec) -> ClusterOps:
            return await clients.get(spec.cluster)

        return Foundation(
            ledger=ledger,
            cluster_for=cluster_for,
            xcoms=StoreSink(xcom_store),
            classify=classify,
            task_state=task_state,
        )

    return wire
