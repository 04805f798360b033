"""LIST pagination (``limit`` / ``continue``), as chunked LISTs of 1,000+ pods use it.

The continue token carries the list's resourceVersion and the last key served; a token older than
the compaction point is answered 410 Expired, as etcd compaction makes the real API do. Pages after
the first see the current state (the real API serves a snapshot; close enough for a fake).
"""

from __future__ import annotations

import base64
import binascii
import json

from finalizer.testing.fake_kube.wire import JSON

TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)


class ContinueError(ValueError):
    """A bad (400) or expired (410) continue token."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def encode_token(rv: int, last: tuple[str, str]) -> str:
    raw = json.dumps({"v": "fake-kube/v1", "rv": rv, "start": f"{last[0]}/{last[1]}"})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_token(token: str, compacted_rv: int) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        rv = int(data["rv"])
        namespace, _, name = str(data["start"]).partition("/")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ContinueError(f"continue key is not valid: {exc}", 400) from exc
    if rv < compacted_rv:
        raise ContinueError(TOO_OLD, 410)
    return rv, (namespace, name)


def page(
    items: list[JSON], rv: int, limit: int | None, after: tuple[str, str] | None
) -> tuple[list[JSON], JSON]:
    """One page of ``items`` (sorted by namespace/name) and the list metadata for it."""

    def key(obj: JSON) -> tuple[str, str]:
        return (obj["metadata"]["namespace"], obj["metadata"]["name"])

    if after is not None:
        items = [pod for pod in items if key(pod) > after]
    meta: JSON = {"resourceVersion": str(rv)}
    if limit is not None and limit > 0 and len(items) > limit:
        served = items[:limit]
        meta["continue"] = encode_token(rv, key(served[-1]))
        meta["remainingItemCount"] = len(items) - limit
        return served, meta
    return items, meta
