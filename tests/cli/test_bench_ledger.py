"""The ledger benchmark makes exactly the pipeline's writes (three per job) and leaves every job DONE."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from finalizer.bench import ledger as ledger_bench
from finalizer.jobs import Step
from finalizer.ledger import Ledger


@pytest.fixture
def job_writes() -> Iterator[collections.Counter[str]]:
    """INSERT / UPDATE statements on the jobs table, as SQLAlchemy sends them to the database."""
    seen: collections.Counter[str] = collections.Counter()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.split()
        if words[:3] in (["INSERT", "INTO", "kpof_jobs"], ["UPDATE", "kpof_jobs", "SET"]):
            seen[words[0]] += 1

    event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", count)


def test_three_writes_per_job_and_every_step_timed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], job_writes: collections.Counter[str]
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    out = tmp_path / "ledger.json"
    assert ledger_bench.main(["--url", url, "--jobs", "12", "--concurrency", "4", "--json", str(out)]) == 0
    assert job_writes == {"INSERT": 12, "UPDATE": 12 * 2}

    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m finalizer.bench.ledger")
    assert result["machine"]["cpus"] >= 1
    assert (result["jobs"], result["writes_per_job"], result["dialect"]) == (12, 3, "sqlite")
    assert result["writes_per_s"] == pytest.approx(3 * result["jobs_per_s"], rel=0.01)
    assert 0 < result["job_ms_p50"] <= result["job_ms_p95"]
    assert "writes_per_job" in capsys.readouterr().out

    async def stored() -> list[Any]:
        async with await Ledger.connect(url) as ledger:
            return [await ledger.get(ledger_bench.bench_spec(result["run_id"], n).key) for n in range(12)]

    every_step = {s for s in Step if s is not Step.REGISTERED}
    for n, rec in enumerate(anyio.run(stored)):
        assert rec is not None
        assert rec.step is Step.DONE
        assert every_step <= set(rec.step_times)
        assert rec.xcom_read
        assert rec.xcom_value == ledger_bench.bench_xcom(n)
        assert rec.outcome == ledger_bench.OUTCOME
