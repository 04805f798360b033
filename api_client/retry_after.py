"""The one reader of the ``Retry-After`` header, for every I/O edge (Execution API and Kubernetes).

RFC 9110 §10.2.3 allows two forms: delay-seconds (``120``) and an HTTP-date
(``Fri, 31 Dec 1999 23:59:59 GMT``). Kubernetes' API priority and fairness sends seconds; proxies
in front of either server may send a date. Both edges read the header here, so they agree on the
three things a hint can get wrong:

- garbage (``soon``, ``-4``, ``nan``, an unparsable date) is no hint at all: ``None``, and the
  caller's own backoff decides;
- a date in the past means "now": ``0.0``;
- any hint is capped at ``MAX_RETRY_AFTER``: a broken proxy must not park a retry loop for hours.

Fractional seconds (``1.5``) are accepted although the RFC says digits only: nothing is lost by
honouring them. Pure; ``now`` is injectable so the date form is testable without a clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import time

__all__ = ["MAX_RETRY_AFTER", "parse_retry_after"]

#: Longest wait a ``Retry-After`` hint can ask for (seconds).
MAX_RETRY_AFTER = 300.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, capped; None when absent or not a valid hint.

    ``now`` (epoch seconds, default ``time.time()``) is what an HTTP-date is measured from.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        delay = float(text)
    except ValueError:
        until = _seconds_until(text, time.time() if now is None else now)
        return None if until is None else min(until, MAX_RETRY_AFTER)
    if not math.isfinite(delay) or delay < 0:  # "nan", "inf", "-4": not a delay
        return None
    return min(delay, MAX_RETRY_AFTER)


def _seconds_until(text: str, now: float) -> float | None:
    """Seconds from ``now`` until an HTTP-date (0.0 when it is past); None if ``text`` is no date."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: an HTTP-date is always GMT
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)
