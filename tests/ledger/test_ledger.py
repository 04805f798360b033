"""The ledger's contract, on SQLite and PostgreSQL: submit, fencing, adoption, payloads, purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from finalizer.exceptions import JobLostError, LedgerError
from finalizer.jobs import Outcome, OutcomeKind, Step
from finalizer.ledger import Ledger
from finalizer.ledger.schema import jobs
from tests.support.ledger import backdate, make_spec

pytestmark = pytest.mark.anyio


async def age_all_jobs(ledger: Ledger, *, hours: float) -> None:
    statement = jobs.update().values(updated_at=datetime.now(UTC) - timedelta(hours=hours))
    await ledger.run_sql(lambda conn: conn.execute(statement))


async def test_submit_inserts_then_returns_the_same_job(ledger: Ledger) -> None:
    me = await ledger.register_instance("host-a", 1)
    spec = make_spec(1)
    rec = await ledger.submit(spec, me)
    assert (rec.key, rec.owner, rec.epoch, rec.step) == (spec.key, me, 1, Step.REGISTERED)
    assert rec.spec == spec
    assert not rec.xcom_read
    assert rec.xcom_value is None
    assert rec.outcome is None
    assert Step.REGISTERED in rec.step_times
    again = await ledger.submit(spec, me)
    assert (again.owner, again.epoch) == (me, 1)
    assert await ledger.get(spec.key) == again
    assert await ledger.get("nope") is None


async def test_submit_leaves_a_live_owners_job_alone_and_adopts_a_dead_ones(ledger: Ledger) -> None:
    a = await ledger.register_instance("host-a", 1)
    b = await ledger.register_instance("host-b", 2)
    spec = make_spec(2)
    await ledger.submit(spec, a)
    seen_by_b = await ledger.submit(spec, b)
    assert (seen_by_b.owner, seen_by_b.epoch) == (a, 1)  # a is alive: b must not act
    await backdate(ledger, a)
    adopted = await ledger.submit(spec, b)
    assert (adopted.owner, adopted.epoch) == (b, 2)


async def test_submit_adopts_the_job_of_an_unregistered_instance(ledger: Ledger) -> None:
    a = await ledger.register_instance("host-a", 1)
    b = await ledger.register_instance("host-b", 2)
    spec = make_spec(3)
    await ledger.submit(spec, a)
    await ledger.unregister(a)
    adopted = await ledger.submit(spec, b)
    assert (adopted.owner, adopted.epoch) == (b, 2)


async def test_advance_records_steps_payload_and_outcome(ledger: Ledger) -> None:
    me = await ledger.register_instance("h", 1)
    rec = await ledger.submit(make_spec(4), me)
    rec = await ledger.advance(rec, Step.COMPLETION_SEEN)
    assert (rec.step, rec.xcom_read) == (Step.COMPLETION_SEEN, False)
    rec = await ledger.advance(rec, Step.XCOM_PERSISTED, xcom={"rows": [1, 2], "ok": True, "s": "é"})
    assert rec.xcom_read
    assert rec.xcom_value == {"rows": [1, 2], "ok": True, "s": "é"}
    outcome = Outcome(kind=OutcomeKind.FAILED, reason="exit 3", event_status="failed", exit_code=3)
    rec = await ledger.advance(rec, Step.DONE, outcome=outcome, error="boom")
    assert (rec.outcome, rec.error, rec.step, rec.done) == (outcome, "boom", Step.DONE, True)
    assert rec.xcom_value == {"rows": [1, 2], "ok": True, "s": "é"}  # UNSET keeps the payload
    assert list(rec.step_times) == [Step.REGISTERED, Step.COMPLETION_SEEN, Step.XCOM_PERSISTED, Step.DONE]
    assert rec.step_times[Step.REGISTERED] <= rec.step_times[Step.DONE]
    assert rec.step_times[Step.DONE].tzinfo is not None
    stored = await ledger.get(rec.key)
    assert stored == rec


async def test_one_write_records_the_steps_passed_since_the_last_one(ledger: Ledger) -> None:
    """Idempotent steps between durability points share one CAS write; each keeps its own time."""
    me = await ledger.register_instance("h", 1)
    rec = await ledger.submit(make_spec(40), me)
    seen = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    rec = await ledger.advance(rec, Step.XCOM_PERSISTED, xcom=[1], reached={Step.COMPLETION_SEEN: seen})
    assert rec.step == Step.XCOM_PERSISTED
    assert rec.step_times[Step.COMPLETION_SEEN] == seen
    later = {s: seen + timedelta(seconds=int(s)) for s in (Step.XCOM_PUSHED, Step.SIDECAR_STOPPED)}
    again = {**later, Step.COMPLETION_SEEN: later[Step.XCOM_PUSHED]}
    rec = await ledger.advance(rec, Step.DONE, reached=again)
    assert list(rec.step_times) == [
        Step.REGISTERED,
        Step.COMPLETION_SEEN,
        Step.XCOM_PERSISTED,
        Step.XCOM_PUSHED,
        Step.SIDECAR_STOPPED,
        Step.DONE,
    ]
    assert rec.step_times[Step.COMPLETION_SEEN] == seen  # the first arrival is kept
    assert rec.step_times[Step.SIDECAR_STOPPED] == later[Step.SIDECAR_STOPPED]
    assert await ledger.get(rec.key) == rec
    fresh = await ledger.submit(make_spec(41), me)
    with pytest.raises(ValueError, match="after XCOM_PERSISTED"):
        await ledger.advance(fresh, Step.XCOM_PERSISTED, reached={Step.DONE: seen})


async def test_empty_xcom_is_distinguished_from_not_read(ledger: Ledger) -> None:
    me = await ledger.register_instance("h", 1)
    rec = await ledger.submit(make_spec(5), me)
    assert (rec.xcom_read, rec.xcom_value) == (False, None)
    rec = await ledger.advance(rec, Step.XCOM_PERSISTED, xcom=None)
    assert (rec.xcom_read, rec.xcom_value) == (True, None)


async def test_first_time_a_step_was_reached_is_kept(ledger: Ledger) -> None:
    me = await ledger.register_instance("h", 1)
    rec = await ledger.submit(make_spec(6), me)
    first = await ledger.advance(rec, Step.COMPLETION_SEEN)
    second = await ledger.advance(first, Step.COMPLETION_SEEN, error="retrying")
    assert second.step_times[Step.COMPLETION_SEEN] == first.step_times[Step.COMPLETION_SEEN]
    with pytest.raises(ValueError, match="cannot go back"):
        await ledger.advance(second, Step.REGISTERED)


async def test_cas_fencing_between_two_owners(ledger: Ledger) -> None:
    a = await ledger.register_instance("host-a", 1)
    b = await ledger.register_instance("host-b", 2)
    rec_a = await ledger.submit(make_spec(7), a)
    rec_a = await ledger.advance(rec_a, Step.COMPLETION_SEEN)
    await backdate(ledger, a)
    [rec_b] = await ledger.adopt_stale(b, threshold=30, limit=10)
    assert (rec_b.owner, rec_b.epoch, rec_b.step) == (b, 2, Step.COMPLETION_SEEN)
    with pytest.raises(JobLostError, match="no longer ours"):
        await ledger.advance(rec_a, Step.XCOM_PERSISTED, xcom={"stale": True})
    rec_b = await ledger.advance(rec_b, Step.XCOM_PERSISTED, xcom={"fresh": True})
    stored = await ledger.get(rec_b.key)
    assert stored is not None
    assert (stored.owner, stored.epoch, stored.xcom_value) == (b, 2, {"fresh": True})
    # Same owner, old epoch (a stale handle of our own) is fenced too.
    with pytest.raises(JobLostError):
        await ledger.release(rec_a)


async def test_adopt_stale_takes_only_dead_owners_unfinished_jobs(ledger: Ledger) -> None:
    live = await ledger.register_instance("live", 1)
    dead = await ledger.register_instance("dead", 2)
    me = await ledger.register_instance("me", 3)
    await ledger.submit(make_spec(10), live)
    for n in (11, 12, 13):
        await ledger.submit(make_spec(n), dead)
    finished = await ledger.submit(make_spec(14), dead)
    await ledger.advance(finished, Step.DONE)
    mine = await ledger.submit(make_spec(15), me)
    await backdate(ledger, dead)
    assert await ledger.adopt_stale(me, threshold=3600 * 2, limit=10) == []  # threshold not reached
    first = await ledger.adopt_stale(me, threshold=30, limit=2)
    rest = await ledger.adopt_stale(me, threshold=30, limit=10)
    assert len(first) == 2
    assert len(rest) == 1
    assert {r.key for r in first + rest} == {make_spec(n).key for n in (11, 12, 13)}
    assert all(r.owner == me and r.epoch == 2 for r in first + rest)
    assert await ledger.adopt_stale(me, threshold=30, limit=10) == []
    assert await ledger.adopt_stale(me, threshold=30, limit=0) == []
    unchanged = await ledger.get(mine.key)
    assert unchanged is not None
    assert unchanged.epoch == 1
    done = await ledger.get(finished.key)
    assert done is not None
    assert done.owner == dead


async def test_released_jobs_are_adoptable_at_once(ledger: Ledger) -> None:
    a = await ledger.register_instance("a", 1)
    b = await ledger.register_instance("b", 2)
    rec = await ledger.submit(make_spec(20), a)
    parked = await ledger.release(rec)
    assert (parked.owner, parked.epoch) == (None, 2)
    with pytest.raises(JobLostError, match="no owner"):
        await ledger.advance(parked, Step.COMPLETION_SEEN)
    [taken] = await ledger.adopt_stale(b, threshold=30, limit=5)
    assert (taken.owner, taken.epoch) == (b, 3)
    assert [j.key for j in await ledger.unfinished(owner=b)] == [rec.key]


async def test_heartbeat_and_instances(ledger: Ledger) -> None:
    me = await ledger.register_instance("host-x", 4242)
    await backdate(ledger, me)
    before = {i.id: i for i in await ledger.instances()}[me]
    await ledger.heartbeat(me)
    after = {i.id: i for i in await ledger.instances()}[me]
    assert (after.host, after.pid) == ("host-x", 4242)
    assert after.heartbeat > before.heartbeat
    assert abs((after.heartbeat - datetime.now(UTC)).total_seconds()) < 60
    await ledger.unregister(me)
    with pytest.raises(LedgerError, match="not registered"):
        await ledger.heartbeat(me)


async def test_purge_drops_only_old_pushed_payloads(ledger: Ledger) -> None:
    me = await ledger.register_instance("h", 1)
    pushed = await ledger.submit(make_spec(30), me)
    pushed = await ledger.advance(pushed, Step.XCOM_PERSISTED, xcom={"secret": "s3cr3t"})
    pushed = await ledger.advance(pushed, Step.XCOM_PUSHED)
    unpushed = await ledger.submit(make_spec(31), me)
    unpushed = await ledger.advance(unpushed, Step.XCOM_PERSISTED, xcom={"only": "copy"})
    assert await ledger.purge_payloads(timedelta(hours=1)) == 0  # too recent
    await age_all_jobs(ledger, hours=2)
    assert await ledger.purge_payloads(timedelta(hours=1)) == 1
    purged = await ledger.get(pushed.key)
    assert purged is not None
    assert (purged.xcom_value, purged.xcom_purged, purged.xcom_read) == (None, True, True)
    kept = await ledger.get(unpushed.key)
    assert kept is not None
    assert (kept.xcom_value, kept.xcom_purged) == ({"only": "copy"}, False)
    assert await ledger.purge_payloads(timedelta(hours=1)) == 0
    await ledger.advance(purged, Step.DONE)
    await age_all_jobs(ledger, hours=2)
    assert await ledger.delete_finished(timedelta(hours=1)) == 1
    assert await ledger.get(pushed.key) is None


async def test_payload_and_spec_stay_out_of_repr(ledger: Ledger) -> None:
    me = await ledger.register_instance("h", 1)
    rec = await ledger.submit(make_spec(40), me)
    rec = await ledger.advance(rec, Step.XCOM_PERSISTED, xcom={"password": "hunter2"})
    text = repr(rec)
    assert "hunter2" not in text
    assert "k8s" not in text
    assert rec.key in text


async def test_non_json_xcom_is_refused_and_nothing_written(ledger: Ledger) -> None:
    me = await ledger.register_instance("h", 1)
    rec = await ledger.submit(make_spec(41), me)
    with pytest.raises(LedgerError, match="not JSON-serialisable"):
        await ledger.advance(rec, Step.XCOM_PERSISTED, xcom={1, 2})
    assert await ledger.get(rec.key) == rec


async def test_each_try_and_pod_is_its_own_job(ledger: Ledger) -> None:
    me = await ledger.register_instance("h", 1)
    first = await ledger.submit(make_spec(50, try_number=1), me)
    retry = await ledger.submit(make_spec(50, try_number=2, uid="uid-new"), me)
    assert first.key != retry.key
    count = await ledger.run_sql(lambda c: c.execute(sa.select(sa.func.count()).select_from(jobs)).scalar())
    assert count == 2
