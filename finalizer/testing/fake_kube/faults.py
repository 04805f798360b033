"""Injected faults and the request log, applied by one aiohttp middleware.

A fault rule matches method + path regex and fires ``times`` times (None = forever). Kinds:
JSON Status error (any code), the API-Priority-and-Fairness 429 in its real plain-text form with
``Retry-After``, added latency, a TCP connection reset (RST, no response at all), and a request
applied whose answer is lost. A rule with ``probability`` < 1 fires on that share of the requests
it matches, drawn from the rule set's own seeded generator (``Faults(seed)``), so a chaos run can
be repeated. Rules and the log are guarded by a lock: tests add faults from any thread.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from finalizer.testing.fake_kube.wire import (
    APF_429_TEXT,
    parse_bool,
    reason_for,
    reset_transport,
    status_response,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RECORD_KEY: web.RequestKey[Callable[[int], None]] = web.RequestKey("fake_kube.record")


def mark_opened(request: web.Request, status: int) -> None:
    """Log a streaming request now (exec after its upgrade), not when the stream ends."""
    record = request.get(RECORD_KEY)
    if record is not None:
        record(status)


@dataclass(slots=True)
class FaultRule:
    method: str | None
    path: re.Pattern[str]
    status: int | None = 500
    body: str | None = None
    plaintext_429: bool = False
    retry_after: int | None = None
    latency: float = 0.0
    reset: bool = False
    times: int | None = 1
    reset_after_handling: bool = False
    probability: float = 1.0
    fired: int = 0

    def matches(self, method: str, path_qs: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path.search(path_qs) is not None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the fake saw it."""

    method: str
    path: str
    query: str
    verb: str  # list | watch | get | create | delete | patch | exec | log | other
    resource: str  # "pods" or "" for non-resource paths
    namespace: str | None
    name: str | None
    status: int  # 0 = connection reset injected
    time: float  # time.time() when the request arrived
    duration: float = 0.0
    user_agent: str = ""  # which client sent it (the sync and async Kubernetes clients differ)


class Faults:
    """The rule set (``kube.faults``)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def seed(self, seed: int | None) -> None:
        """Restart the draws of probabilistic rules from ``seed`` (same seed, same draws)."""
        with self._lock:
            self._random.seed(seed)

    def add(
        self,
        method: str | None = "GET",
        path: str = r".*",
        *,
        status: int | None = 500,
        body: str | None = None,
        plaintext_429: bool = False,
        retry_after: int | None = None,
        latency: float = 0.0,
        reset: bool = False,
        times: int | None = 1,
        reset_after_handling: bool = False,
        probability: float = 1.0,
    ) -> FaultRule:
        """Add a rule; ``status=None`` with ``latency`` only delays; ``reset`` drops the connection.

        ``reset_after_handling``: the request takes effect, then the connection is reset instead of
        answering (a DELETE that succeeded but whose answer was lost).
        ``probability``: the share (0 < p <= 1) of matching requests the rule takes; ``times``
        then counts only the requests it took.
        """
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be within (0, 1], got {probability}")
        if plaintext_429:
            status = 429
        if reset_after_handling:
            status = None
        rule = FaultRule(
            method,
            re.compile(path),
            status,
            body,
            plaintext_429,
            retry_after,
            latency,
            reset,
            times,
            reset_after_handling,
            probability,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def configured(self) -> bool:
        """Any rule at all (a lock-free glance: requests skip matching when there is none)."""
        return bool(self._rules)

    def take(self, method: str, path_qs: str) -> FaultRule | None:
        """The first live matching rule that fires (its draw, if probabilistic), counted as fired."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path_qs) or (rule.times is not None and rule.fired >= rule.times):
                    continue
                if rule.probability < 1 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None


class RequestLog:
    def __init__(self) -> None:
        self._entries: list[RequestRecord] = []
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._entries.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def counts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter((r.verb, r.resource) for r in self._entries)


_PATH_RE = re.compile(
    r"^/(?:api/v1|apis/batch/v1)(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>pods|events|jobs)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


def classify(request: web.Request) -> tuple[str, str, str | None, str | None]:
    """(verb, resource, namespace, name) of a request, as audit logs would name them."""
    match = _PATH_RE.match(request.path)
    if match is None:
        return "other", "", None, None
    namespace, name, sub = match.group("ns"), match.group("name"), match.group("sub")
    resource = match.group("res")
    if sub in ("exec", "log"):
        return sub, "pods", namespace, name
    method = request.method
    if method == "GET" and name is None:
        try:
            watching = parse_bool(request.query.get("watch"))
        except ValueError:
            watching = False
        return ("watch" if watching else "list"), resource, namespace, None
    verbs = {"GET": "get", "POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}
    return verbs.get(method, method.lower()), resource, namespace, name


def _reset(request: web.Request) -> None:
    reset_transport(request.transport)


def _fault_response(rule: FaultRule) -> web.StreamResponse:
    assert rule.status is not None
    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
    if rule.plaintext_429:
        headers.setdefault("Retry-After", "1")
        return web.Response(status=429, text=APF_429_TEXT, content_type="text/plain", headers=headers)
    if rule.body is not None:
        return web.Response(
            status=rule.status, text=rule.body, content_type="application/json", headers=headers
        )
    return status_response(
        rule.status, f"fake-kube injected fault ({rule.status})", reason_for(rule.status), headers=headers
    )


def make_middleware(
    faults: Faults,
    log: RequestLog,
    latency: Callable[[], float],
    token: str | None = None,
    authorize: Callable[[str | None], bool] | None = None,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Faults, latency, request log, and (when ``token`` is set) bearer-token checking;
    ``authorize`` (the ``Authorization`` header → accepted) checks tokens that change and expire."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.time()
        verb, resource, namespace, name = classify(request)

        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            log.append(
                RequestRecord(
                    request.method,
                    request.path,
                    request.query_string,
                    verb,
                    resource,
                    namespace,
                    name,
                    status,
                    started,
                    time.time() - started,
                    request.headers.get("User-Agent", ""),
                )
            )

        # Long-lived streams (watch, exec) are logged as they open: see ``mark_opened``.
        request[RECORD_KEY] = record
        delay = latency()
        rule = faults.take(request.method, request.path_qs) if faults.configured else None
        if rule is not None:
            delay += rule.latency
        if delay > 0:
            await asyncio.sleep(delay)
        if rule is not None and rule.reset:
            record(0)
            _reset(request)
            raise asyncio.CancelledError  # nothing more may be written on this connection
        if rule is not None and rule.status is not None:
            response = _fault_response(rule)
            record(response.status)
            return response
        header = request.headers.get("Authorization")
        if (token is not None and header != f"Bearer {token}") or (
            authorize is not None and not authorize(header)
        ):
            response = status_response(401, "Unauthorized", "Unauthorized")
            record(401)
            return response
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # The router's own 404/405 become API-style Status bodies, as kube-apiserver sends them.
            record(exc.status)
            if exc.status == 404:
                return status_response(404, "the server could not find the requested resource", "NotFound")
            if exc.status == 405:
                return status_response(405, "the server does not allow this method on the requested resource")
            raise
        if rule is not None and rule.reset_after_handling:
            record(0)
            _reset(request)
            raise asyncio.CancelledError
        record(response.status)
        return response

    return middleware


__all__ = ["FaultRule", "Faults", "RequestLog", "RequestRecord", "classify", "make_middleware", "mark_opened"]
