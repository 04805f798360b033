"""``ExecutionAPIClient``: typed async client for Airflow's Task Execution API (version ``2026-06-30``).

Usage::

    async with ExecutionAPIClient("http://airflow-api:8080/execution", token=TokenFile(path)) as client:
        await client.xcoms.set(XComRef(dag_id, run_id, task_id, "return_value"), {"a": 1})
        await client.task_instances.succeed(ti_id)

Any httpx transport works (``httpx.ASGITransport(app=app)`` in tests; ``base_url`` then has no
``/execution``). Errors: ``api_client.exceptions``. Retries: transport errors, 5xx and 429 only, per
``retry`` (``api_client.backoff.RetryPolicy``: bounded attempts and an overall deadline).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import httpx

from api_client._http import HTTPCore, parse
from api_client.auth import TokenProvider, as_token_provider
from api_client.backoff import RetryPolicy
from api_client.models import API_VERSION, HealthPing
from api_client.operations import TaskInstanceOperations, XComOperations

__all__ = ["DEFAULT_RETRY", "DEFAULT_TIMEOUT", "ExecutionAPIClient"]

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_RETRY = RetryPolicy(max_attempts=5, base_delay=0.2, max_delay=5.0, deadline=30.0)

TokenLike = TokenProvider | str | os.PathLike[str] | Callable[[], str] | Callable[[], Awaitable[str]]


class ExecutionAPIClient:
    """One connection pool to one Execution API; operation groups ``xcoms`` and ``task_instances``."""

    def __init__(
        self,
        base_url: str | httpx.URL,
        *,
        token: TokenLike | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        api_version: str = API_VERSION,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        """``token``: a ``TokenProvider``, a token string, a ``Path`` to a token file, or a callable.

        Pass ``http`` to borrow an existing ``httpx.AsyncClient`` (then ``base_url``, ``transport`` and
        ``timeout`` are ignored and ``aclose`` leaves it open).
        """
        self._owns_http = http is None
        if http is None:
            http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)
        self.tokens: TokenProvider | None = None if token is None else as_token_provider(token)
        self._core = HTTPCore(http, tokens=self.tokens, api_version=api_version, retry=retry)
        self.xcoms = XComOperations(self._core)
        self.task_instances = TaskInstanceOperations(self._core)

    @property
    def api_version(self) -> str:
        return self._core.api_version

    async def health(self) -> HealthPing:
        """``GET /health/ping``: the server and its token validator answer. 500 → ``ServerError``."""
        response = await self._core.request("GET", "/health/ping", authenticated=False)
        return parse(HealthPing, response)

    async def server_versions(self) -> tuple[str, ...]:
        """The API versions the server serves, newest first."""
        return await self._core.server_versions()

    async def check_version(self) -> None:
        """Raise ``APIVersionError`` now if the server does not serve our pinned version."""
        supported = await self.server_versions()
        if self.api_version not in supported:
            raise self._core.version_error(supported)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._core.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        base = str(self._core.http.base_url)
        return f"ExecutionAPIClient(base_url={base!r}, api_version={self.api_version!r})"
