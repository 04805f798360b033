"""Transport edges that need no Airflow: refused connections, 429/Retry-After, deadlines, bad values."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import httpx
import pytest

from api_client import (
    ExecutionAPIClient,
    InvalidValueError,
    RateLimitedError,
    RetryPolicy,
    TransportError,
    UnexpectedResponseError,
    XComRef,
)

pytestmark = pytest.mark.anyio

REF = XComRef("dag", "run", "task", "return_value")
SECRET = "s3cr3t-token-value-that-must-never-be-logged"


def closed_port() -> int:
    """A real local port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Recorder(httpx.AsyncBaseTransport):
    """Plays back canned responses in order and records each request."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        await request.aread()
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]


async def test_connection_refused_is_retried_then_transport_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="api_client")
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, deadline=5.0)
    async with ExecutionAPIClient(f"http://127.0.0.1:{closed_port()}", token=SECRET, retry=policy) as client:
        with pytest.raises(TransportError) as err:
            await client.xcoms.set(REF, {"a": 1})
    assert isinstance(err.value.__cause__, httpx.ConnectError)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2  # three attempts
    assert SECRET not in caplog.text
    assert SECRET not in str(err.value)


async def test_429_honours_retry_after() -> None:
    transport = Recorder(
        httpx.Response(429, headers={"Retry-After": "0.3"}, json={"detail": "slow down"}),
        httpx.Response(201, json={"message": "XCom successfully set"}),
    )
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001, deadline=5.0)
    async with ExecutionAPIClient("http://api", token=SECRET, transport=transport, retry=policy) as client:
        await client.xcoms.set(REF, 1)
    assert len(transport.requests) == 2
    assert transport.times[1] - transport.times[0] >= 0.3


async def test_retry_after_past_the_deadline_gives_up_at_once() -> None:
    transport = Recorder(httpx.Response(429, headers={"Retry-After": "120"}, json={"detail": "later"}))
    policy = RetryPolicy(max_attempts=5, deadline=10.0)
    async with ExecutionAPIClient("http://api", token=SECRET, transport=transport, retry=policy) as client:
        with pytest.raises(RateLimitedError) as err:
            await client.xcoms.set(REF, 1)
    assert len(transport.requests) == 1
    assert err.value.retry_after == 120.0


async def test_request_shape() -> None:
    """Version pinned, bearer token, raw JSON body (``null`` too), query params, encoded path."""
    transport = Recorder(httpx.Response(201, json={"message": "ok"}))
    ref = XComRef("d", "manual__2026-01-01T00:00:00+00:00", "t", "a/b c", map_index=2)
    async with ExecutionAPIClient("http://api/execution", token=SECRET, transport=transport) as client:
        await client.xcoms.set(ref, None, mapped_length=4)
    (request,) = transport.requests
    assert request.method == "POST"
    assert request.headers["Airflow-API-Version"] == "2026-06-30"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.content == b"null"
    assert request.url.raw_path.startswith(
        b"/execution/xcoms/d/manual__2026-01-01T00%3A00%3A00%2B00%3A00/t/a%2Fb%20c"
    )
    assert dict(request.url.params) == {"map_index": "2", "mapped_length": "4"}


@pytest.mark.parametrize("value", [float("nan"), {1, 2}, b"bytes", {"x": object()}])
async def test_non_json_value_is_rejected_before_sending(value: Any) -> None:
    transport = Recorder(httpx.Response(201, json={}))
    async with ExecutionAPIClient("http://api", token=SECRET, transport=transport) as client:
        with pytest.raises(InvalidValueError):
            await client.xcoms.set(REF, value)
    assert transport.requests == []


async def test_garbage_success_body_on_get_is_an_error() -> None:
    transport = Recorder(httpx.Response(200, content=b"<html>proxy</html>"))
    async with ExecutionAPIClient("http://api", token=SECRET, transport=transport) as client:
        with pytest.raises(UnexpectedResponseError, match="not a XComResponse"):
            await client.xcoms.get(REF)


async def test_unsupported_url_scheme_is_terminal() -> None:
    async with ExecutionAPIClient("ftp://api", token=SECRET) as client:
        with pytest.raises(TransportError) as err:
            await client.xcoms.set(REF, 1)
    assert err.value.retry_after is None
