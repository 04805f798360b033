"""The pipeline's container log through a trigger's channel, against the fake API server and the
real Execution API: the whole log after the end, nothing with get_logs=False, one follow stream
with logging_interval (reopened after a reset without repeating a line); and the
``outcome_marker`` option (no marker XCom, allowed only with a PostgreSQL ledger)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from finalizer.jobs import JobSpec, Outcome, OutcomeKind
from finalizer.log_channel import LogChannel, open_channel
from tests.pipeline.harness import NS, Rig, World, fast_config
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


async def collect(channel: LogChannel, into: list[tuple[int, str]]) -> None:
    while (chunk := await channel.get()) is not None:
        into.extend(chunk.lines)


async def run_with_channel(
    rig: Rig, spec: JobSpec, channel: LogChannel, lines: list[tuple[int, str]]
) -> Outcome:
    with open_channel(spec.key, channel):
        reader = asyncio.create_task(collect(channel, lines))
        outcome: Outcome = await rig.run(spec)
        channel.end()
        await reader
    return outcome


def log_queries(world: World, spec: JobSpec) -> list[str]:
    return [r.query for r in world.kube.requests if r.verb == "log" and r.name == spec.pod.name]


async def test_whole_log_through_the_channel_not_the_tail(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom="1")
    world.kube.set_logs(NS, spec.pod.name, "base", ["one", "ERROR: two"])
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    lines: list[tuple[int, str]] = []
    outcome = await run_with_channel(rig, spec, LogChannel(), lines)
    # One record for both (same level), each line prefixed as upstream's _write_logs does.
    assert lines == [(logging.INFO, "[base] logs: one\n[base] logs: ERROR: two")]
    assert outcome.log_tail is None
    assert len(log_queries(world, spec)) == 1


async def test_get_logs_false_reads_no_log(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom="1")
    world.kube.set_logs(NS, spec.pod.name, "base", ["one"])
    world.kube.terminate(NS, spec.pod.name, exit_code=1)
    lines: list[tuple[int, str]] = []
    outcome = await run_with_channel(rig, spec, LogChannel(want_logs=False), lines)
    assert outcome.kind is OutcomeKind.FAILED
    assert lines == []
    assert log_queries(world, spec) == []


async def test_follow_is_one_stream_and_a_reset_repeats_no_line(world: World, rig: Rig) -> None:
    spec = world.make_job(xcom="1")
    world.kube.set_logs(NS, spec.pod.name, "base", ["WARNING: early"])
    # The first follow request is reset before it answers: the follower opens it again.
    world.kube.faults.add("GET", rf"/pods/{spec.pod.name}/log", reset=True, times=1)
    channel = LogChannel(follow=True)
    lines: list[tuple[int, str]] = []
    with open_channel(spec.key, channel):
        reader = asyncio.create_task(collect(channel, lines))
        job = asyncio.create_task(rig.run(spec))
        await eventually(lambda: (logging.WARNING, "[base] WARNING: early") in lines, what="the live line")
        world.kube.append_logs(NS, spec.pod.name, "base", ["later"])
        await eventually(lambda: (logging.INFO, "[base] later") in lines, what="an appended line, live")
        assert not job.done()
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
        outcome = await job
        channel.end()
        await reader
    assert outcome.kind is OutcomeKind.SUCCESS
    assert [text for _, text in lines] == ["[base] WARNING: early", "[base] later"]
    queries = log_queries(world, spec)
    assert len(queries) == 2, queries  # the reset one, then the one stream
    assert all("follow=True" in q for q in queries)


async def test_outcome_marker_off_writes_no_marker(world: World, rig: Rig, tmp_path: Path) -> None:
    config = fast_config(tmp_path, ledger_url="postgresql+asyncpg://u@127.0.0.1/x", outcome_marker=False)
    spec = world.make_job(xcom="1")
    world.kube.terminate(NS, spec.pod.name, exit_code=1)
    rec = await rig.ledger.submit(spec, rig.owner)  # type: ignore[union-attr]
    outcome = await rig.pipeline(config=config).run(spec, rec)
    assert outcome.kind is OutcomeKind.FAILED
    assert not world.has_xcom(spec, "__kpo_finalizer_outcome")


def test_outcome_marker_off_needs_a_postgresql_ledger(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs a PostgreSQL ledger"):
        fast_config(tmp_path, outcome_marker=False)


async def test_follow_of_a_container_still_running_stops_at_once(world: World, rig: Rig) -> None:
    """A timeout (or an eviction) ends the job while the container runs: its follow stream would
    never end by itself, so it is stopped at once, not after FOLLOW_GRACE."""
    from datetime import UTC, datetime, timedelta

    from finalizer.jobs import StartupRules
    from finalizer.pipeline import FOLLOW_GRACE

    deadline = datetime.now(UTC) + timedelta(seconds=2)
    spec = world.make_job(xcom="1", startup=StartupRules(execution_deadline=deadline))
    world.kube.set_logs(NS, spec.pod.name, "base", ["still going"])
    channel = LogChannel(follow=True)
    lines: list[tuple[int, str]] = []
    started = asyncio.get_running_loop().time()
    with open_channel(spec.key, channel):
        reader = asyncio.create_task(collect(channel, lines))
        outcome = await rig.run(spec)
        took = asyncio.get_running_loop().time() - started
        channel.end()
        await reader
    assert "execution_timeout" in outcome.reason
    assert took < FOLLOW_GRACE / 2, took
    assert (logging.INFO, "[base] still going") in lines  # what it wrote so far, once
    assert [text for _, text in lines].count("[base] still going") == 1


async def test_follow_gives_up_on_a_4xx_and_reads_the_whole_log_at_the_end(world: World, rig: Rig) -> None:
    """A 403 (no pods/log RBAC) is not reopened once a second: one WARNING line, then the whole
    log once the pod ended."""
    spec = world.make_job(xcom="1")
    world.kube.set_logs(NS, spec.pod.name, "base", ["one"])
    world.kube.faults.add("GET", rf"/pods/{spec.pod.name}/log", status=403, times=1)
    channel = LogChannel(follow=True)
    lines: list[tuple[int, str]] = []
    with open_channel(spec.key, channel):
        reader = asyncio.create_task(collect(channel, lines))
        job = asyncio.create_task(rig.run(spec))
        await eventually(lambda: any(level == logging.WARNING for level, _ in lines), what="the warning")
        world.kube.terminate(NS, spec.pod.name, exit_code=0)
        outcome = await job
        channel.end()
        await reader
    assert outcome.kind is OutcomeKind.SUCCESS
    warnings = [text for level, text in lines if level == logging.WARNING]
    assert len(warnings) == 1, lines
    assert "the live log stopped" in warnings[0]
    assert (logging.INFO, "[base] logs: one") in lines
    queries = log_queries(world, spec)
    assert len(queries) == 2, queries  # the refused follow, then one whole read after the end
    assert "follow=True" in queries[0]
    assert "follow=True" not in queries[1]


async def test_a_channel_that_stays_full_ends_the_log_with_how_many_bytes_were_not_shown(
    world: World, rig: Rig
) -> None:
    """The trigger's loop is stuck (nobody takes a chunk within ``put_timeout``): the job is not
    held, the rest of the log is counted, and the task log says how much it did not show."""
    from finalizer.metrics import METRICS

    spec = world.make_job(xcom="1")
    log_lines = [f"line {i:05d} " + "x" * 50 for i in range(3000)]  # ~190 KB: several batches
    total = sum(len(line) + 1 for line in log_lines)
    world.kube.set_logs(NS, spec.pod.name, "base", log_lines)
    world.kube.terminate(NS, spec.pod.name, exit_code=0)
    channel = LogChannel(max_chunks=1, put_timeout=0.2)
    before = METRICS.log_bytes_unshown.value()
    with open_channel(spec.key, channel):
        outcome = await rig.run(spec)  # nobody reads while the job runs: the channel stays full
        channel.end()
        lines: list[tuple[int, str]] = []
        await collect(channel, lines)
    assert outcome.kind is OutcomeKind.SUCCESS
    shown = [text for _, record in lines for text in record.split("\n") if text.startswith("[base] logs: ")]
    assert 0 < len(shown) < len(log_lines)
    assert shown == [f"[base] logs: {line}" for line in log_lines[: len(shown)]]  # a prefix, in order
    unshown = total - sum(len(text.removeprefix("[base] logs: ")) + 1 for text in shown)
    level, last = lines[-1]
    assert level == logging.WARNING
    assert last.startswith(f"[base] {unshown} bytes of the container log were not shown because")
    assert METRICS.log_bytes_unshown.value() == before + unshown
