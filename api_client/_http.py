"""One request to the Execution API: headers, token, retries, error translation.

Everything that touches httpx lives here. Each attempt asks the token provider for a fresh token,
pins ``Airflow-API-Version``, and hands any ``Refreshed-API-Token`` back to the provider. Transport
errors, 5xx and 429 are retried by ``api_client.backoff.retry_async`` (bounded attempts and an overall
deadline); every other error answer raises its typed error at once.

Log lines name the method, path and status only: never headers, bodies or tokens.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from api_client.auth import TokenProvider
from api_client.backoff import RetryPolicy, retry_async
from api_client.exceptions import (
    APIVersionError,
    ExecutionAPIError,
    InvalidValueError,
    ServerResponseError,
    UnexpectedResponseError,
    classify,
    error_from_response,
    map_httpx_errors,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

VERSION_HEADER = "Airflow-API-Version"
REFRESH_HEADER = "Refreshed-API-Token"


class HTTPCore:
    """Owns the ``httpx.AsyncClient`` (or borrows one) and performs requests for the operation groups."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        tokens: TokenProvider | None,
        api_version: str,
        retry: RetryPolicy,
    ) -> None:
        self.http = http
        self.tokens = tokens
        self.api_version = api_version
        self.retry = retry

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        send_body: bool = False,
        authenticated: bool = True,
    ) -> httpx.Response:
        """Send with retries; return the successful (< 400) response or raise our error.

        With ``send_body`` the JSON of ``body`` is the request body (``None`` → the literal ``null``,
        which the XCom endpoint stores as a JSON null). It is encoded once, before any attempt.
        """
        content = _dumps(body) if send_body else None
        query = _clean_params(params)

        async def attempt() -> httpx.Response:
            return await self._attempt(
                method, path, query=query, content=content, authenticated=authenticated
            )

        def on_retry(attempt_no: int, exc: BaseException, wait: float) -> None:
            log.warning(
                "%s %s failed (attempt %d), retrying in %.2fs: %s", method, path, attempt_no, wait, exc
            )

        return await retry_async(attempt, self.retry, classify, on_retry=on_retry)

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None,
        content: bytes | None,
        authenticated: bool,
    ) -> httpx.Response:
        headers = {VERSION_HEADER: self.api_version}
        if authenticated and self.tokens is not None:
            headers["Authorization"] = f"Bearer {await self.tokens.get_token()}"
        if content is not None:
            headers["Content-Type"] = "application/json"
        with map_httpx_errors(method, path):
            response = await self.http.request(method, path, headers=headers, params=query, content=content)
        refreshed = response.headers.get(REFRESH_HEADER)
        if refreshed and self.tokens is not None:
            self.tokens.refreshed(refreshed)
            log.debug("%s %s: server refreshed the API token", method, path)
        if response.status_code < 400:
            return response
        error = error_from_response(response, method=method, path=path)
        if response.status_code == 404 and _is_bare_route_miss(error):
            raise await self._version_or_route_error(error)
        raise error

    async def server_versions(self) -> tuple[str, ...]:
        """API versions the server serves, newest first (from Cadwyn's unversioned ``/changelog``)."""
        with map_httpx_errors("GET", "/changelog"):
            response = await self.http.get("/changelog")
        if response.status_code != 200:
            raise error_from_response(response, method="GET", path="/changelog")
        try:
            versions = response.json()["versions"]
            return tuple(str(v["value"]) for v in versions)
        except (ValueError, KeyError, TypeError) as exc:
            raise UnexpectedResponseError("GET /changelog: unexpected answer, not an Execution API?") from exc

    async def _version_or_route_error(self, error: ServerResponseError) -> ExecutionAPIError:
        """A bare ``{"detail": "Not Found"}`` is either an unknown API version or a wrong URL: find out."""
        try:
            supported = await self.server_versions()
        except ExecutionAPIError:
            return error
        if self.api_version in supported:
            return error
        return self.version_error(supported)

    def version_error(self, supported: tuple[str, ...]) -> APIVersionError:
        return APIVersionError(
            f"the server does not serve Execution API version {self.api_version} (this client's pinned "
            f"version); it serves: {', '.join(supported) or 'none'}",
            requested=self.api_version,
            supported=supported,
        )


def parse(model: type[M], response: httpx.Response) -> M:
    """Validate a success body against ``model``; a body that does not fit is our error, not pydantic's."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        request = response.request
        raise UnexpectedResponseError(
            f"{request.method} {request.url.path} → {response.status_code}: answer is not a "
            f"{model.__name__} ({exc.error_count()} validation errors)"
        ) from exc


def _is_bare_route_miss(error: ServerResponseError) -> bool:
    return error.detail == "Not Found" and error.reason is None


def _clean_params(params: dict[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"value is not JSON: {exc}") from exc


__all__ = ["REFRESH_HEADER", "VERSION_HEADER", "HTTPCore", "parse"]
