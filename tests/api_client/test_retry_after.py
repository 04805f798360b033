"""The one ``Retry-After`` reader, and both edges that use it agreeing on every form."""

from __future__ import annotations

import email.utils

import pytest
from multidict import CIMultiDict

from api_client.exceptions import error_for_status as api_error_for_status
from api_client.retry_after import MAX_RETRY_AFTER, parse_retry_after
from finalizer.exceptions import KubeTransientError
from finalizer.kube.errors import error_for_status as kube_error_for_status

NOW = 1_800_000_000.0


def _date(offset: float) -> str:
    return email.utils.formatdate(NOW + offset, usegmt=True)


CASES = [
    # seconds
    ("3", 3.0),
    (" 12 ", 12.0),
    ("0", 0.0),
    ("1.5", 1.5),
    # HTTP-date: measured from now, a past date means now
    (_date(30), 30.0),
    (_date(-30), 0.0),
    ("Fri, 15 Jan 2027 08:00:30 -0000", 30.0),  # no zone given: GMT, whatever the local zone
    # absent, garbage, negative: no hint
    (None, None),
    ("", None),
    ("   ", None),
    ("soon", None),
    ("nan", None),
    ("inf", None),
    ("Fri, 99 Foo", None),
    ("-4", None),
    ("-0.5", None),
    # capped
    ("9999", MAX_RETRY_AFTER),
    (_date(86_400), MAX_RETRY_AFTER),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(expected)


def test_cap_is_five_minutes() -> None:
    assert MAX_RETRY_AFTER == 300.0
    assert parse_retry_after("300") == 300.0
    assert parse_retry_after("301") == 300.0


def test_http_date_defaults_to_the_wall_clock() -> None:
    header = email.utils.formatdate(usegmt=True)  # now, to the second
    assert parse_retry_after(header) == pytest.approx(0.0, abs=1.0)


@pytest.mark.parametrize(("value", "expected"), CASES)
@pytest.mark.parametrize("status", [429, 503])
def test_both_edges_read_it_the_same(
    monkeypatch: pytest.MonkeyPatch, status: int, value: str | None, expected: float | None
) -> None:
    """The Kubernetes edge keeps None for "no hint", the Execution API edge says 0.0 (retry at once)."""
    monkeypatch.setattr("time.time", lambda: NOW)
    kube = kube_error_for_status(status, "", CIMultiDict({} if value is None else {"Retry-After": value}))
    api = api_error_for_status(status, "x", method="GET", path="/x", retry_after=value)
    assert isinstance(kube, KubeTransientError)
    assert kube.retry_after == pytest.approx(expected)
    assert api.retry_after == pytest.approx(0.0 if expected is None else expected)
