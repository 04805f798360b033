"""Where the Execution API bearer token comes from: a seam with three implementations.

The client asks its provider for a token before every attempt (``await provider.get_token()``) and
hands back any ``Refreshed-API-Token`` the server sent (``provider.refreshed(token)``). The refreshed
token replaces the current one in place and wins until the provider's own source changes (a new file
content, a different value from the callable): a source that changed knows something newer.

Tokens are secrets: no provider shows one in ``repr``/``str``, and the client never logs headers.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from api_client.exceptions import TokenError

__all__ = ["CallableToken", "StaticToken", "TokenFile", "TokenProvider", "as_token_provider"]


@runtime_checkable
class TokenProvider(Protocol):
    """Supplies the bearer token; told about server-side refreshes."""

    async def get_token(self) -> str: ...

    def refreshed(self, token: str) -> None: ...


class _Refreshable:
    """Shared bookkeeping: the last source value seen and a refreshed override."""

    def __init__(self) -> None:
        self._source: str | None = None
        self._override: str | None = None

    def _resolve(self, source: str) -> str:
        if not source:
            raise TokenError(f"{type(self).__name__} produced an empty token")
        if source != self._source:
            # The source changed (or first read): it is newer than any refresh we kept.
            self._source = source
            self._override = None
        return self._override or source

    def refreshed(self, token: str) -> None:
        if token:
            self._override = token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"


class StaticToken(_Refreshable):
    """A fixed token (e.g. the one in a workload). Refreshes replace it in place."""

    def __init__(self, token: str) -> None:
        super().__init__()
        if not token:
            raise TokenError("StaticToken needs a non-empty token")
        self._token = token

    async def get_token(self) -> str:
        return self._resolve(self._token)


class TokenFile(_Refreshable):
    """A token kept in a file by someone else (e.g. a sidecar); re-read when the file changes.

    Change detection is by ``(mtime_ns, size, inode)``, so unchanged files cost one ``stat``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._content = ""

    async def get_token(self) -> str:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                self._content = self.path.read_text().strip()
                self._stamp = stamp
        except OSError as exc:
            raise TokenError(f"cannot read token file {self.path}: {exc.strerror or exc}") from exc
        return self._resolve(self._content)

    def __repr__(self) -> str:
        return f"TokenFile(path={str(self.path)!r}, token=***)"


class CallableToken(_Refreshable):
    """Calls ``fn()`` (sync or async) for every attempt; a refreshed token wins until ``fn`` changes."""

    def __init__(self, fn: Callable[[], str] | Callable[[], Awaitable[str]]) -> None:
        super().__init__()
        self._fn = fn

    async def get_token(self) -> str:
        try:
            result = self._fn()
            value = await result if inspect.isawaitable(result) else result
        except TokenError:
            raise
        except Exception as exc:
            raise TokenError(f"token callable failed: {type(exc).__name__}") from exc
        if not isinstance(value, str):
            raise TokenError(f"token callable returned {type(value).__name__}, not str")
        return self._resolve(value)


def as_token_provider(
    token: TokenProvider | str | os.PathLike[str] | Callable[[], str] | Callable[[], Awaitable[str]],
) -> TokenProvider:
    """Accept the common shapes: a provider, a token string, a ``Path`` to a token file, a callable."""
    if isinstance(token, TokenProvider):
        return token
    if isinstance(token, str):
        return StaticToken(token)
    if isinstance(token, os.PathLike):
        return TokenFile(token)
    if callable(token):
        return CallableToken(token)
    raise TypeError(f"cannot make a token provider from {type(token).__name__}")
