"""Raw (``_preload_content=False``) responses: check the status, read a bounded body, parse it.

kubernetes_asyncio hands back the aiohttp response as is: no status check, and
``content.read(n)`` returns whatever chunk has arrived, not ``n`` bytes. These helpers do
both properly, so a body is either whole or refused, never silently cut; a success body that
is not a JSON object (a proxy's page, a cut stream) is a transient error, like a 5xx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from finalizer.exceptions import KubeTerminalError, KubeTransientError, PodNotFoundError
from finalizer.kube.errors import error_for_status, kube_errors

MAX_ERROR_BODY = 64 * 1024

RawCall = Callable[..., Awaitable[Any]]


async def read_body(
    response: aiohttp.ClientResponse, limit: int, *, what: str, truncate: bool = False
) -> bytes:
    """The whole body, or its first ``limit`` bytes when ``truncate``; else over-limit raises.

    The response is released either way.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = await response.content.read(min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        response.release()
    body = b"".join(chunks)
    if len(body) > limit:
        if truncate:
            return body[:limit]
        raise KubeTransientError(f"{what}: the response is larger than {limit} bytes")
    return body


async def raise_for_response(
    response: aiohttp.ClientResponse,
    *,
    what: str,
    not_found: type[KubeTerminalError] = PodNotFoundError,
) -> None:
    """Raise the finalizer error for a non-2xx answer (the response is then released)."""
    if 200 <= response.status <= 299:
        return
    try:
        body = await read_body(response, MAX_ERROR_BODY, what=what, truncate=True)
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    raise error_for_status(response.status, body, response.headers, what=what, not_found=not_found)


def parse_object(body: bytes, *, what: str, expected: str = "an object") -> dict[str, Any]:
    """The JSON object in a success body; anything else raises ``KubeTransientError``."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise KubeTransientError(f"{what}: the API sent a body that is not JSON") from exc
    if not isinstance(data, dict):
        raise KubeTransientError(f"{what}: the API sent {type(data).__name__}, expected {expected}")
    return data


async def bounded_call(
    limiter: asyncio.Semaphore,
    request_timeout: Any,
    what: str,
    call: RawCall,
    *args: Any,
    max_bytes: int,
    truncate: bool = False,
    not_found: type[KubeTerminalError] = PodNotFoundError,
    **kwargs: Any,
) -> bytes:
    """One raw unary call in a slot of ``limiter``: the body as bytes, at most ``max_bytes`` of it."""
    async with limiter:
        with kube_errors(what, not_found):
            response: aiohttp.ClientResponse = await call(
                *args, _preload_content=False, _request_timeout=request_timeout, **kwargs
            )
            await raise_for_response(response, what=what, not_found=not_found)
            return await read_body(response, max_bytes, what=what, truncate=truncate)
