"""The kube-faults note of ``bench chaos`` says the true shares (review of issue 13, finding 9).

The "33 % logged vs 20 % drawn" of a campaign was measured on the fake kube with the scenario's
rules and plain aiohttp (/tmp experiment, 200 pods, a GET and a DELETE each, retried): 551
requests logged for 479 sent (aiohttp resends an idempotent request once on a reused connection
that was reset), the five kinds fired on 19.8 % of all requests (20 % drawn) and 'DELETE answer
lost' on top, so 35.7 % of the DELETEs and 31.4 % of all requests were faulted.
"""

from __future__ import annotations

import pytest

from finalizer.bench.chaos_report import fault_share_note

README_RUN = {"DELETE answer lost": 8, "reset": 11, "500": 3, "503": 3, "429": 3, "latency": 5}


@pytest.mark.parametrize(
    ("fired", "requests", "deletes", "parts"),
    [
        (
            README_RUN,
            100,
            40,
            [
                "33 of 100 requests on the pods faulted (33%;",
                "the five kinds on 25% of all requests (20% drawn per request)",
                "'DELETE answer lost' on 8 of 40 DELETEs (20%, 20% drawn)",
                "about 36% of the DELETEs are faulted, and they are 40% of the requests",
            ],
        ),
        ({"DELETE answer lost": 0, "reset": 0}, 0, 0, ["0 of 0 requests on the pods faulted (-;"]),
    ],
)
def test_the_note_splits_the_share_by_rule(
    fired: dict[str, int], requests: int, deletes: int, parts: list[str]
) -> None:
    note = fault_share_note(0.2, fired, requests, deletes)
    for part in parts:
        assert part in note
