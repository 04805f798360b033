"""Pure rules: the outcome marker — when it is needed, what it holds, how a re-run reads it back.

A trigger re-run on another triggerer, after the pod is gone, must reach the same outcome, and a
local SQLite ledger does not travel with it. Airflow's XCom store is shared by every triggerer,
so the outcome is recorded there, before the pod is deleted:

- **A plain success whose return value was pushed needs no marker.** Its ``return_value`` XCom
  *is* the record: Airflow clears a task instance's XComs when a try starts (the Execution API's
  ``xcom_keys_to_clear``, applied by the task runner), so a ``return_value`` present during a
  deferred try was pushed by this try's finalization. This halves the XCom writes through the
  triggerer's supervisor for the common case.
- **Every other outcome gets a marker** (failure, skip, fail-fast, fallback, or a success with
  nothing pushed). Where the outcome is known before the XCom push, the marker is written
  *before* the push, so "``return_value`` present, no marker" can only mean the success path.
- The marker holds the job key (ti id, try number, pod uid) and the outcome without its log tail
  or empty fields; a marker of another job (another try, another pod of the same name) is ignored.
- A shared PostgreSQL ledger makes it redundant in the steady state (a re-run finds the job DONE
  there), but not unnecessary: the ledger is a per-triggerer setting (the default is a local
  SQLite file), so one triggerer set up differently, a reset ledger or a finished row already
  deleted loses the record, while Airflow's XCom store is the one every triggerer shares. It
  costs one small XCom write per task that does not end as a plain success; so it is kept.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from finalizer.jobs import JobSpec, Outcome, OutcomeKind

#: The XCom key of the finalization-outcome marker (written before the pod is deleted).
MARKER_KEY = "__kpo_finalizer_outcome"


def needed(outcome: Outcome, *, return_value_pushed: bool) -> bool:
    """Whether ``outcome`` must be recorded in a marker (see the module docstring)."""
    return not (outcome.kind is OutcomeKind.SUCCESS and return_value_pushed)


def encode_marker(spec: JobSpec, outcome: Outcome) -> dict[str, Any]:
    """The marker XCom value: the job key and the outcome, nothing else (no payload, no log tail,
    no empty fields): a few hundred bytes, the reason being the largest part."""
    return {
        "job": spec.key,
        "outcome": outcome.model_dump(mode="json", exclude={"log_tail"}, exclude_none=True),
    }


def decode_marker(value: Any, spec: JobSpec) -> Outcome | None:
    """The outcome recorded by a marker, if it belongs to this very job (ti try + pod uid)."""
    if not isinstance(value, dict) or value.get("job") != spec.key:
        return None
    try:
        return Outcome.model_validate(value.get("outcome"))
    except ValidationError:
        return None


def from_return_value(spec: JobSpec) -> Outcome:
    """No marker, but this try's ``return_value`` is stored: the success path finished the job."""
    return Outcome(
        kind=OutcomeKind.SUCCESS,
        reason=(
            f"Pod {spec.pod.namespace}/{spec.pod.name} was finished by an earlier run of this task try: "
            "its return_value XCom is stored"
        ),
    )
