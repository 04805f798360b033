"""Credentials providers for the tests: a static one, and one for each way a provider goes wrong."""

from __future__ import annotations

import datetime
from typing import Any

from finalizer.kube.credentials import ClusterCredentials, CredentialsProvider

HERE = "tests.kube.credential_providers"


class Static(CredentialsProvider):
    """A fixed host and token that never expires (``account`` names it without holding it)."""

    TOKENS: dict[str, str] = {}

    def __init__(self, *, host: str, account: str) -> None:
        super().__init__(host=host, account=account)
        self.host, self.account = host, account

    async def credentials(self) -> ClusterCredentials:
        return ClusterCredentials(host=self.host, token=self.TOKENS[self.account])


class Raising(CredentialsProvider):
    async def credentials(self) -> ClusterCredentials:
        raise RuntimeError("metadata server unreachable")


class Garbage(CredentialsProvider):
    async def credentials(self) -> Any:
        return {"host": "https://x", "token": "t"}


class EmptyToken(CredentialsProvider):
    async def credentials(self) -> ClusterCredentials:
        return ClusterCredentials(host="https://10.0.0.1", token="")


class BadHost(CredentialsProvider):
    async def credentials(self) -> ClusterCredentials:
        return ClusterCredentials(host="10.0.0.1", token="sekrit-token-1")


class NaiveExpiry(CredentialsProvider):
    async def credentials(self) -> ClusterCredentials:
        return ClusterCredentials(
            host="https://10.0.0.1", token="sekrit-token-2", expires_at=datetime.datetime(2030, 1, 1)
        )


class NoKwargs(CredentialsProvider):
    def __init__(self) -> None:
        super().__init__()

    async def credentials(self) -> ClusterCredentials:
        raise AssertionError("never built")


NOT_A_PROVIDER = "json.JSONDecoder"
