"""Typed async client for Airflow's Task Execution API (version ``2026-06-30``, Airflow 3.3.2).

- ``ExecutionAPIClient``: HTTP, any httpx transport, token providers, ``Refreshed-API-Token``, bounded
  retries (``api_client.client``); operation groups ``client.xcoms`` and ``client.task_instances``.
- ``XComStore`` / ``XComRef``: the XCom sink contract (``api_client.store``), implemented by
  ``client.xcoms`` and by ``SupervisorXComStore`` (inside ``airflow triggerer``; ``api_client.supervisor``).
- One exception tree: ``api_client.exceptions``.

Airflow itself is never imported here except lazily by ``SupervisorXComStore``.
"""

from api_client.auth import CallableToken, StaticToken, TokenFile, TokenProvider
from api_client.backoff import RetryPolicy
from api_client.client import ExecutionAPIClient
from api_client.exceptions import (
    APIVersionError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ExecutionAPIError,
    InvalidStateError,
    InvalidValueError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ServerResponseError,
    TokenError,
    TransportError,
    UnexpectedResponseError,
    XComNotFoundError,
    classify,
)
from api_client.models import (
    API_VERSION,
    HealthPing,
    TerminalStateNonSuccess,
    TIRetryStatePayload,
    TIStatePayload,
    TISuccessStatePayload,
    TITerminalStatePayload,
)
from api_client.store import XComRef, XComStore
from api_client.supervisor import SupervisorUnavailableError, SupervisorXComStore

__all__ = [
    "API_VERSION",
    "APIVersionError",
    "AuthenticationError",
    "BadRequestError",
    "CallableToken",
    "ConflictError",
    "ExecutionAPIClient",
    "ExecutionAPIError",
    "HealthPing",
    "InvalidStateError",
    "InvalidValueError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RetryPolicy",
    "ServerError",
    "ServerResponseError",
    "StaticToken",
    "SupervisorUnavailableError",
    "SupervisorXComStore",
    "TIRetryStatePayload",
    "TIStatePayload",
    "TISuccessStatePayload",
    "TITerminalStatePayload",
    "TerminalStateNonSuccess",
    "TokenError",
    "TokenFile",
    "TokenProvider",
    "TransportError",
    "UnexpectedResponseError",
    "XComNotFoundError",
    "XComRef",
    "XComStore",
    "classify",
]
