"""The one exception tree of ``api_client``: every failure a caller can see is one of these.

::

    ExecutionAPIError                  root; ``retry_after`` is None unless the error is transient
    ├── TokenError                     the token provider could not produce a token (file missing, …)
    ├── InvalidValueError              an XCom value is not JSON (NaN, bytes, set…): nothing was sent
    ├── TransportError                 no HTTP answer: connect refused, timeout, protocol error   [transient]
    │                                  (except an unsupported URL scheme: terminal)
    ├── APIVersionError                the server does not serve our pinned ``Airflow-API-Version``
    ├── UnexpectedResponseError        a success answer we cannot understand (not JSON, wrong shape)
    └── ServerResponseError            the server answered with an error status (status_code, reason, detail)
        ├── BadRequestError            400 / 422: the request is invalid (empty key, bad payload, map length)
        ├── AuthenticationError        401: no token
        ├── PermissionDeniedError      403: bad, expired or wrong-subject token
        ├── NotFoundError              404: unknown DAG run / task instance / route
        │   └── XComNotFoundError      404 on an XCom read (also raised by the supervisor backend)
        ├── ConflictError              409
        │   └── InvalidStateError      409 ``invalid_state``: carries ``previous_state``
        ├── RateLimitedError           429, honours ``Retry-After``                              [transient]
        └── ServerError                5xx                                                        [transient]

Transient errors carry ``retry_after`` (seconds, 0.0 when the server gave no hint); ``classify`` turns
that into the classifier ``api_client.backoff.retry_async`` expects. Foreign errors (httpx) are mapped
in exactly one place, ``map_httpx_errors``, and re-raised ``from`` the original. No message here ever
contains a token: requests are described by method and path only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from api_client.retry_after import parse_retry_after

__all__ = [
    "APIVersionError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ExecutionAPIError",
    "InvalidStateError",
    "InvalidValueError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "ServerResponseError",
    "TokenError",
    "TransportError",
    "UnexpectedResponseError",
    "XComNotFoundError",
    "classify",
    "error_for_status",
    "error_from_response",
    "map_httpx_errors",
]


class ExecutionAPIError(Exception):
    """A Task Execution API call failed."""

    #: Seconds the caller should wait before retrying; None = do not retry (terminal).
    retry_after: float | None = None


class TokenError(ExecutionAPIError):
    """The token provider could not produce a token."""


class InvalidValueError(ExecutionAPIError, ValueError):
    """The value cannot be sent as JSON; nothing was sent."""


class TransportError(ExecutionAPIError):
    """No HTTP answer (connection refused, timeout, broken connection): worth retrying."""

    retry_after: float | None = 0.0


class APIVersionError(ExecutionAPIError):
    """The server does not serve the API version this client speaks."""

    def __init__(self, message: str, *, requested: str, supported: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.requested = requested
        self.supported = supported


class UnexpectedResponseError(ExecutionAPIError):
    """The server said success but the body is not what the API defines (a proxy page, …)."""


class ServerResponseError(ExecutionAPIError):
    """The server answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str = "",
        path: str = "",
        reason: str | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.path = path
        #: ``detail.reason`` of Airflow's structured errors (e.g. ``invalid_state``, ``not_found``).
        self.reason = reason
        #: The decoded ``detail`` of the answer (dict, list or string), for diagnostics.
        self.detail = detail


class BadRequestError(ServerResponseError):
    """400 or 422: the request itself is invalid; retrying will not help."""


class AuthenticationError(ServerResponseError):
    """401: the request carried no token."""


class PermissionDeniedError(ServerResponseError):
    """403: the token is invalid, expired, or for another task instance."""


class NotFoundError(ServerResponseError):
    """404: the DAG run, task instance or route does not exist."""


class XComNotFoundError(NotFoundError):
    """The XCom does not exist."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status_code", 404)
        super().__init__(message, **kwargs)


class ConflictError(ServerResponseError):
    """409: the request conflicts with the current state."""


class InvalidStateError(ConflictError):
    """409 ``invalid_state``: the TI is not in a state that allows this change.

    ``previous_state`` tells "already finished" (``success``, ``failed``…) from "not allowed"
    (``deferred``: only the triggerer may end a deferred task in Airflow 3.3).
    """

    def __init__(self, message: str, *, previous_state: str | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.previous_state = previous_state


class RateLimitedError(ServerResponseError):
    """429: too many requests; ``retry_after`` says how long the server asked us to wait."""


class ServerError(ServerResponseError):
    """5xx: the server failed; worth retrying."""


def classify(exc: BaseException) -> float | None:
    """Classifier for ``retry_async``: the wait hint of a transient ``ExecutionAPIError``, else None."""
    if isinstance(exc, ExecutionAPIError):
        return exc.retry_after
    return None


def _wait_hint(retry_after: str | None) -> float:
    """A transient answer's ``retry_after``: the server's hint, 0.0 when it gave none (or garbage)."""
    seconds = parse_retry_after(retry_after)
    return 0.0 if seconds is None else seconds


def _decode_detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return body.get("detail", body) if isinstance(body, dict) else body


def error_for_status(
    status: int, detail: Any, *, method: str, path: str, retry_after: str | None = None
) -> ServerResponseError:
    """Translate an error answer (status, decoded ``detail``, ``Retry-After``) into the tree above. Pure."""
    reason = detail.get("reason") if isinstance(detail, dict) else None
    text = detail.get("message", detail) if isinstance(detail, dict) else detail
    message = f"{method} {path} → {status}: {text}"
    common: dict[str, Any] = {
        "status_code": status,
        "method": method,
        "path": path,
        "reason": reason,
        "detail": detail,
    }
    error: ServerResponseError
    if status in (400, 422):
        error = BadRequestError(message, **common)
    elif status == 401:
        error = AuthenticationError(message, **common)
    elif status == 403:
        error = PermissionDeniedError(message, **common)
    elif status == 404:
        error = NotFoundError(message, **common)
    elif status == 409 and reason == "invalid_state":
        previous = detail.get("previous_state") if isinstance(detail, dict) else None
        error = InvalidStateError(message, previous_state=previous, **common)
    elif status == 409:
        error = ConflictError(message, **common)
    elif status == 429:
        error = RateLimitedError(message, **common)
        error.retry_after = _wait_hint(retry_after)
    elif status >= 500:
        error = ServerError(message, **common)
        error.retry_after = _wait_hint(retry_after)
    else:
        error = ServerResponseError(message, **common)
    return error


def error_from_response(response: httpx.Response, *, method: str, path: str) -> ServerResponseError:
    """``error_for_status`` for an httpx response."""
    return error_for_status(
        response.status_code,
        _decode_detail(response),
        method=method,
        path=path,
        retry_after=response.headers.get("Retry-After"),
    )


@contextlib.contextmanager
def map_httpx_errors(method: str, path: str) -> Iterator[None]:
    """The one place where httpx exceptions become ours (``TransportError``), chained ``from``."""
    try:
        yield
    except httpx.UnsupportedProtocol as exc:
        # A misconfigured URL (no scheme, ftp://…): retrying cannot help.
        error = TransportError(f"{method} {path}: {type(exc).__name__}: {exc}")
        error.retry_after = None
        raise error from exc
    except httpx.TransportError as exc:
        raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
