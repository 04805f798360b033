"""A token service for the fake cluster: short-lived bearer tokens, as GKE's and EKS's are.

``TokenIssuer`` mints a new token per ``POST /token`` that lives ``ttl`` seconds; the fake
Kubernetes API accepts exactly the live ones (``FakeKube(authorize=issuer.authorize)``), so a
client that does not refresh in time gets 401. ``IssuedTokenCredentials`` is the matching
``CredentialsProvider`` (kwargs: ``issuer_url``, ``cluster_url``), importable in a triggerer.
Typical use::

    with TokenIssuer.in_thread(ttl=4) as issuer, FakeKube.in_thread(authorize=issuer.authorize) as kube:
        ref = CredentialsRef(provider=PROVIDER, kwargs=issuer.provider_kwargs(kube.url))
"""

from __future__ import annotations

import datetime
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiohttp import web

from finalizer.kube.credentials import ClusterCredentials, CredentialsProvider
from finalizer.testing.fake_kube.thread import serve_in_thread

#: The provider's import path, for ``CredentialsRef(provider=...)``.
PROVIDER = "finalizer.testing.token_issuer.IssuedTokenCredentials"


class TokenIssuer:
    """Mints tokens that expire; answers 503 while ``failing`` is set."""

    def __init__(self, *, ttl: float = 60.0) -> None:
        self.ttl = ttl
        #: Answer 503 to token requests (a token service outage).
        self.failing = False
        self._tokens: dict[str, float] = {}  # token -> expiry (time.monotonic)
        self._lock = threading.Lock()
        #: Every token minted (tests check none leaks into logs or the ledger).
        self.minted: list[str] = []
        #: Tokens minted so far, and 401s the cluster answered.
        self.issued = 0
        self.rejected = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def mint(self) -> tuple[str, float]:
        token = "tok-" + secrets.token_hex(8)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.ttl
            self.minted.append(token)
            self.issued += 1
        return token, self.ttl

    def authorize(self, header: str | None) -> bool:
        """For ``FakeKube(authorize=...)``: a live token of ours."""
        token = (header or "").removeprefix("Bearer ")
        with self._lock:
            expiry = self._tokens.get(token)
            ok = expiry is not None and time.monotonic() < expiry
            if not ok:
                self.rejected += 1
        return ok

    def live(self) -> int:
        """How many minted tokens still work."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for expiry in self._tokens.values() if now < expiry)

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def provider_kwargs(self, cluster_url: str) -> dict[str, Any]:
        return {"issuer_url": self.url, "cluster_url": cluster_url}

    async def _token(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.json_response({"error": "unavailable"}, status=503)
        token, ttl = self.mint()
        return web.json_response({"access_token": token, "expires_in": ttl})

    async def open(self) -> TokenIssuer:
        app = web.Application()
        app.router.add_post("/token", self._token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    @classmethod
    @contextmanager
    def in_thread(cls, **options: Any) -> Iterator[TokenIssuer]:
        issuer = cls(**options)
        with serve_in_thread(issuer.open, issuer.close, name="token-issuer"):
            yield issuer


class IssuedTokenCredentials(CredentialsProvider):
    """Asks the ``TokenIssuer`` for a token on every call, as GKE's and EKS's hooks do."""

    def __init__(self, *, issuer_url: str, cluster_url: str, **kwargs: Any) -> None:
        super().__init__(issuer_url=issuer_url, cluster_url=cluster_url, **kwargs)
        self.issuer_url = issuer_url
        self.cluster_url = cluster_url

    async def credentials(self) -> ClusterCredentials:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.post(self.issuer_url) as response,
        ):
            response.raise_for_status()
            body = await response.json()
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=float(body["expires_in"]))
        return ClusterCredentials(host=self.cluster_url, token=str(body["access_token"]), expires_at=expires)
