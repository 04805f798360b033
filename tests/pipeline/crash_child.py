"""Child process for the crash-resume test: run one job until a step is recorded, then SIGKILL itself.

``python -m tests.pipeline.crash_child ARGS_JSON`` with ``spec``, ``ledger_url``, ``base_url``,
``token`` and ``kill_at`` (a ``Step`` name). Nothing is cleaned up: that is the point.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from api_client.client import ExecutionAPIClient
from finalizer.config import FinalizerConfig
from finalizer.jobs import JobSpec, Step
from finalizer.kube.clients import KubeClients
from finalizer.ledger import Ledger
from finalizer.pipeline import Pipeline
from finalizer.retry import classify
from finalizer.seams import ClusterOps
from finalizer.wiring import StoreSink


async def main(args: dict[str, Any]) -> None:
    spec = JobSpec.model_validate(args["spec"])
    kill_at = Step[args["kill_at"]]
    ledger = await Ledger.connect(args["ledger_url"])
    owner = await ledger.register_instance("crash-child", os.getpid())
    clients = KubeClients()
    client = ExecutionAPIClient(args["base_url"], token=args["token"])

    async def cluster_for(job: JobSpec) -> ClusterOps:
        return await clients.get(job.cluster)

    async def on_step(job: JobSpec, rec: Any) -> None:
        if rec.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    pipeline = Pipeline(
        config=FinalizerConfig(state_dir=Path(args["state_dir"])),
        cluster_for=cluster_for,
        ledger=ledger,
        xcoms=StoreSink(client.xcoms),
        classify=classify,
        on_step=on_step,
    )
    rec = await ledger.submit(spec, owner)
    await pipeline.run(spec, rec)
    sys.exit(3)  # the kill step was never reached


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
