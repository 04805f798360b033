"""Reasons say what happened: an XCom read and rejected (invalid JSON, not UTF-8, too large) says
so, and nothing claims it was never read. Real fake API server, real Execution API, real ledger."""

from __future__ import annotations

import pytest

from finalizer.jobs import OutcomeKind
from tests.pipeline.harness import NS, Rig, World

pytestmark = pytest.mark.anyio

CASES = [
    ("invalid-json", b"{not json", 1024 * 1024, "not valid JSON"),
    ("binary", b"\xff\xfe\x00binary", 1024 * 1024, "not UTF-8"),
    ("too-large", b'"' + b"x" * 200 + b'"', 64, "larger than the limit of 64 bytes"),
]


@pytest.mark.parametrize(("content", "cap", "why"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_a_rejected_xcom_says_it_was_read_and_rejected(
    world: World, rig: Rig, content: bytes, cap: int, why: str
) -> None:
    spec = world.make_job(xcom=content, xcom_max_bytes=cap)
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    outcome = await rig.run(spec)
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason.startswith("the XCom was read and rejected: "), outcome.reason
    assert why in outcome.reason, outcome.reason
    assert "never read" not in outcome.reason
    assert not world.has_xcom(spec)
