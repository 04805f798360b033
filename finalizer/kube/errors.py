"""The one place where Kubernetes-side errors become finalizer exceptions.

kubernetes_asyncio raises ``ApiException`` (preloaded calls only), aiohttp raises
``ClientError`` / ``WSServerHandshakeError`` (exec) and ``asyncio.TimeoutError``; raw
(``_preload_content=False``) responses carry a status we must check ourselves. Everything
above this module sees only :mod:`finalizer.exceptions`, so callers decide on classes::

    transport error, timeout, 5xx, 429   -> KubeTransientError(retry_after=Retry-After)
    404                                  -> PodNotFoundError (BatchJobNotFoundError for Jobs: ``not_found``)
    409                                  -> PodConflictError
    any other 4xx                        -> KubeRequestError

``Retry-After`` is read by :mod:`api_client.retry_after`, as the Execution API client reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from api_client.retry_after import parse_retry_after
from finalizer.exceptions import (
    FinalizerError,
    KubeError,
    KubeRequestError,
    KubeTerminalError,
    KubeTransientError,
    PodConflictError,
    PodNotFoundError,
)

#: How much of an error body ends up in a message (bodies can be whole HTML pages).
MAX_BODY_IN_MESSAGE = 300


def status_message(body: str | bytes | None) -> str:
    """The ``message`` of a JSON ``Status`` body, else the (truncated) body as text."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("message"):
        return str(parsed["message"])
    text = text.strip()
    return text if len(text) <= MAX_BODY_IN_MESSAGE else text[:MAX_BODY_IN_MESSAGE] + "…"


def error_for_status(
    status: int,
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    what: str = "Kubernetes API call",
    not_found: type[KubeTerminalError] = PodNotFoundError,
) -> KubeError:
    """The finalizer exception for an HTTP error answer (pure: table-tested).

    ``not_found`` is the 404 class: the object the call was about (a pod, or a batch/v1 Job).
    """
    detail = status_message(body)
    message = f"{what} failed: HTTP {status}" + (f": {detail}" if detail else "")
    retry_after = parse_retry_after(headers.get("Retry-After")) if headers is not None else None
    if status == 429 or status >= 500 or status == 0:
        return KubeTransientError(message, status=status, retry_after=retry_after)
    if status == 404:
        return not_found(message, status=status)
    if status == 409:
        return PodConflictError(message, status=status)
    return KubeRequestError(message, status=status)


def translate(
    exc: BaseException,
    *,
    what: str = "Kubernetes API call",
    not_found: type[KubeTerminalError] = PodNotFoundError,
) -> FinalizerError | None:
    """Map a foreign exception to ours; None when it is not a Kubernetes-side error."""
    if isinstance(exc, FinalizerError):
        return exc
    if isinstance(exc, ApiException):
        return error_for_status(int(exc.status or 0), exc.body, exc.headers, what=what, not_found=not_found)
    if isinstance(exc, aiohttp.ClientResponseError):  # includes WSServerHandshakeError
        return error_for_status(exc.status, exc.message, exc.headers, what=what, not_found=not_found)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return KubeTransientError(f"{what} timed out")
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        return KubeTransientError(f"{what} failed: {type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def kube_errors(
    what: str = "Kubernetes API call", not_found: type[KubeTerminalError] = PodNotFoundError
) -> Iterator[None]:
    """Re-raise Kubernetes-side errors raised inside the block as finalizer exceptions."""
    try:
        yield
    except FinalizerError:
        raise
    except Exception as exc:
        translated = translate(exc, what=what, not_found=not_found)
        if translated is None:
            raise
        raise translated from exc
