"""Pure pieces: status → error table, Retry-After parsing, classification; token providers."""

from __future__ import annotations

import email.utils
import os
from pathlib import Path
from typing import Any

import pytest

from api_client import (
    AuthenticationError,
    BadRequestError,
    CallableToken,
    ConflictError,
    ExecutionAPIError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ServerResponseError,
    StaticToken,
    TokenError,
    TokenFile,
    TokenProvider,
    TransportError,
    classify,
)
from api_client.auth import as_token_provider
from api_client.exceptions import error_for_status

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("status", "detail", "retry_after", "cls", "wait"),
    [
        (400, {"reason": "invalid_key", "message": "m"}, None, BadRequestError, None),
        (422, [{"type": "string_too_short"}], None, BadRequestError, None),
        (401, "Missing auth token", None, AuthenticationError, None),
        (403, "Invalid auth token", None, PermissionDeniedError, None),
        (404, {"reason": "not_found", "message": "m"}, None, NotFoundError, None),
        (409, {"reason": "invalid_state", "previous_state": "deferred"}, None, InvalidStateError, None),
        (409, {"reason": "running_elsewhere"}, None, ConflictError, None),
        (410, {"reason": "not_found"}, None, ServerResponseError, None),
        (429, "slow", "7", RateLimitedError, 7.0),
        (429, "slow", None, RateLimitedError, 0.0),
        (500, {"message": "Internal server error"}, None, ServerError, 0.0),
        (503, "down", "2", ServerError, 2.0),
    ],
)
def test_error_for_status(
    status: int, detail: Any, retry_after: str | None, cls: type[ServerResponseError], wait: float | None
) -> None:
    error = error_for_status(status, detail, method="GET", path="/x", retry_after=retry_after)
    assert type(error) is cls
    assert error.status_code == status
    assert classify(error) == wait
    assert str(status) in str(error)


def test_invalid_state_carries_previous_state_and_reason() -> None:
    detail = {"reason": "invalid_state", "message": "not running", "previous_state": "success"}
    error = error_for_status(409, detail, method="PATCH", path="/task-instances/x/state")
    assert isinstance(error, InvalidStateError)
    assert error.previous_state == "success"
    assert error.reason == "invalid_state"
    assert "not running" in str(error)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 0.0), ("", 0.0), ("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("soon", 0.0)],
)
def test_retry_after_of_a_429(header: str | None, expected: float) -> None:
    """The header is read by api_client.retry_after (tests/api_client/test_retry_after.py); no hint = 0.0."""
    assert error_for_status(429, "slow", method="GET", path="/x", retry_after=header).retry_after == expected


def test_retry_after_http_date(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_800_000_000.0
    monkeypatch.setattr("time.time", lambda: now)
    header = email.utils.formatdate(now + 30, usegmt=True)
    error = error_for_status(503, "down", method="GET", path="/x", retry_after=header)
    assert error.retry_after == pytest.approx(30.0, abs=1.0)


def test_classify_only_transient_ours() -> None:
    assert classify(TransportError("x")) == 0.0
    assert classify(ExecutionAPIError("x")) is None
    assert classify(ValueError("x")) is None


async def test_static_token_refresh_replaces_in_place() -> None:
    provider = StaticToken("first")
    assert await provider.get_token() == "first"
    provider.refreshed("second")
    assert await provider.get_token() == "second"
    provider.refreshed("")  # an empty header is ignored
    assert await provider.get_token() == "second"
    assert "first" not in repr(provider)
    assert "second" not in repr(provider)


async def test_token_file_rereads_on_change_and_beats_a_stale_refresh(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one\n")
    provider = TokenFile(path)
    assert await provider.get_token() == "one"
    provider.refreshed("refreshed")
    assert await provider.get_token() == "refreshed"  # file unchanged: the refresh wins
    path.write_text("two-longer")
    assert await provider.get_token() == "two-longer"  # the file changed: it is newer
    assert "two-longer" not in repr(provider)


async def test_token_file_same_size_rewrite_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("aaaa")
    provider = TokenFile(path)
    assert await provider.get_token() == "aaaa"
    path.write_text("bbbb")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert await provider.get_token() == "bbbb"


@pytest.mark.parametrize("content", [None, "", "   \n"])
async def test_token_file_missing_or_empty_is_token_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokenError):
        await TokenFile(path).get_token()


async def test_callable_token_sync_async_and_failures() -> None:
    values = iter(["a", "a", "b"])
    provider = CallableToken(lambda: next(values))
    assert await provider.get_token() == "a"
    provider.refreshed("r")
    assert await provider.get_token() == "r"  # the callable still says "a": the refresh is newer
    assert await provider.get_token() == "b"  # the callable changed its answer: it wins

    async def boom() -> str:
        raise RuntimeError("vault down")

    with pytest.raises(TokenError, match="RuntimeError"):
        await CallableToken(boom).get_token()
    with pytest.raises(TokenError, match="int"):
        await CallableToken(lambda: 5).get_token()  # type: ignore[arg-type,return-value]


def test_as_token_provider_shapes(tmp_path: Path) -> None:
    assert isinstance(as_token_provider("t"), StaticToken)
    assert isinstance(as_token_provider(tmp_path / "f"), TokenFile)
    assert isinstance(as_token_provider(lambda: "t"), CallableToken)
    provider = StaticToken("t")
    assert as_token_provider(provider) is provider
    assert isinstance(provider, TokenProvider)
    with pytest.raises(TokenError):
        StaticToken("")
    with pytest.raises(TypeError):
        as_token_provider(42)  # type: ignore[arg-type]
