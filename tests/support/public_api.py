"""Airflow's own Public API (``/api/v2``, what the UI calls) in this process, for user actions.

Marking a task success or failed goes through ``PATCH .../taskInstances/{task_id}`` as the UI
does (``dag.set_task_instance_state``, state listeners), not by writing the TI row. The simple
auth manager in all-admins mode stands in for a logged-in admin.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from finalizer.testing.airflow_env import TIInfo


@contextlib.asynccontextmanager
async def public_api() -> AsyncIterator[httpx.AsyncClient]:
    """A client on the real core API app (lifespan running), every request an admin's."""
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()  # the auth manager is a process singleton: build it with all-admins on
    app = create_app(apps="core")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://airflow", timeout=60) as client:
            yield client


async def set_state(client: httpx.AsyncClient, ti: TIInfo, state: str) -> Any:
    """Mark ``ti`` ``state`` as the UI's "Mark as success/failed" does; the API's answer (JSON)."""
    response = await client.patch(
        f"/api/v2/dags/{ti.dag_id}/dagRuns/{ti.run_id}/taskInstances/{ti.task_id}",
        params={"update_mask": "new_state"},
        json={"new_state": state},
    )
    assert response.status_code == 200, response.text
    return response.json()
