"""Wire-level building blocks shared by every handler: Status bodies, booleans, timestamps.

The shapes here are what kube-apiserver really sends (see ``/work/shared/facts/kubernetes.md``);
clients key on them, so they are built in one place and never by hand in handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import marshal
import socket
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from aiohttp import web

JSON = dict[str, Any]
T = TypeVar("T")

#: The API Priority-and-Fairness rejection body: plain text, not a Status.
APF_429_TEXT = "Too many requests, please try again later.\n"

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def reason_for(code: int) -> str:
    """The Status ``reason`` kube-apiserver uses for an HTTP code (``Unknown`` otherwise)."""
    return _REASONS.get(code, "Unknown")


def status_body(code: int, message: str, reason: str | None = None, details: JSON | None = None) -> JSON:
    """A ``Status`` object with ``status: Failure`` as the API sends for errors."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or reason_for(code),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def status_response(
    code: int,
    message: str,
    reason: str | None = None,
    details: JSON | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An HTTP error response carrying a JSON Status body."""
    return json_response(status_body(code, message, reason, details), status=code, headers=headers)


def not_found(name: str, resource: str = "pods") -> web.Response:
    """The 404 for a missing pod: ``pods "x" not found``."""
    return status_response(
        404, f'{resource} "{name}" not found', "NotFound", {"name": name, "kind": resource}
    )


def dumps(obj: Any) -> str:
    """Compact JSON, as the API server writes it."""
    return json.dumps(obj, separators=(",", ":"))


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(obj), status=status, content_type="application/json", headers=headers)


def parse_bool(value: str | None) -> bool | None:
    """Go's ``strconv.ParseBool``: 1 t T TRUE true True / 0 f F FALSE false False; else ValueError.

    ``None`` (parameter absent) stays ``None``; an empty string counts as absent too, as the API does.
    """
    if value is None or value == "":
        return None
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def now() -> datetime:
    return datetime.now(UTC)


_last_second: tuple[int, str] = (-1, "")  # the last whole second ``timestamp()`` formatted, and its text


def timestamp(when: datetime | None = None) -> str:
    """RFC 3339 seconds precision with ``Z``, the form of ``creationTimestamp``.

    Without ``when`` the text of the current second is formatted once (pods take several per change).
    """
    if when is not None:
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    global _last_second
    second = int(time.time())
    cached = _last_second
    if cached[0] == second:
        return cached[1]
    text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _last_second = (second, text)
    return text


def timestamp_nano(when: datetime) -> str:
    """RFC 3339 with nanoseconds, the form of ``timestamps=true`` log prefixes."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


_MARSHAL_VERSION = 2


def clone(value: T) -> T:
    """Deep copy of JSON data (dicts, lists, scalars); several times faster than ``copy.deepcopy`` on pods.

    ``marshal`` copies plain dicts/lists/str/int/float/bool/None in C; anything else it refuses
    (a dict subclass, a datetime) takes the Python walk, which keeps non-JSON leaves as they are.
    Format 2 has no back-references: an object met twice is copied twice, as the walk does.
    """
    try:
        return cast(T, marshal.loads(marshal.dumps(cast(Any, value), _MARSHAL_VERSION)))
    except ValueError:
        return cast(T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    return value


@contextlib.contextmanager
def client_may_leave() -> Iterator[None]:
    """Around the writes of a streaming answer (watch, log follow, exec): a client that hung up is done.

    aiohttp cancels a handler when its connection is lost, but a client that closes while a write is
    under way makes that write raise ``ClientConnectionResetError`` ("Cannot write to closing
    transport") first; left to aiohttp, that is an "Error handling request" traceback for what is an
    ordinary end of a watch. The stream simply ends.
    """
    with contextlib.suppress(ConnectionResetError):
        yield


def reset_transport(transport: asyncio.Transport | None) -> None:
    """Drop a connection with a TCP RST (SO_LINGER 0), as a dying proxy or node does: no close, no EOF."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def node_unreachable(node: str) -> web.Response:
    """What the API server answers when it cannot reach the pod's kubelet."""
    return status_response(
        500, f"error dialing backend: dial tcp 10.0.0.1:10250: connect: no route to host (node {node})"
    )
