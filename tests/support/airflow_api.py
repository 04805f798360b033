"""The api_client tests' Airflow world: its DAG, and the running Execution API app with helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from api_client import ExecutionAPIClient, RetryPolicy
from finalizer.testing.airflow_env import AirflowEnv, TIInfo

__all__ = ["DAG_ID", "DAG_SOURCE", "FAST_RETRY", "AirflowAPI"]

DAG_ID = "kpof_api_client"
DAG_SOURCE = f'''
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("{DAG_ID}", schedule=None):
    EmptyOperator(task_id="producer")
    EmptyOperator(task_id="other")
'''

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=5.0, jitter=0.0)


@dataclass
class AirflowAPI:
    """A migrated DB with one DAG, and the running Execution API app."""

    backend: str
    env: AirflowEnv
    app: Any

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def new_ti(self, state: str | None = "running", task_id: str = "producer") -> TIInfo:
        """A fresh dag run; its ``task_id`` TI put in ``state``."""
        run = self.env.create_run(DAG_ID)
        ti = run.ti(task_id)
        if state == "deferred":
            self.env.defer_ti(ti.id, "airflow.triggers.testing.SuccessTrigger", {})
        elif state is not None:
            self.env.set_ti_state(ti.id, state)
        return self.env.get_ti(ti.id)

    def client(self, token: Any = None, *, ti: TIInfo | None = None, **kwargs: Any) -> ExecutionAPIClient:
        """A client on the app; the token defaults to a fresh one for ``ti``."""
        if token is None and ti is not None:
            token = self.env.mint_token(ti.id)
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("transport", self.transport())
        return ExecutionAPIClient("http://execution-api", token=token, **kwargs)
