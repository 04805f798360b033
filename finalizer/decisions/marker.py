"""Pure rule: the outcome marker, and how a trigger re-run recognises the marker of *its own* job.

The marker is a small XCom written before the pod is deleted. Airflow's XCom store is shared by
every triggerer, so a trigger re-run elsewhere, after the pod is gone, reads it back and reaches
the same outcome (``finalizer/ledger/DECISIONS.md``: the local ledger does not travel).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from finalizer.jobs import JobSpec, Outcome

#: The XCom key of the finalization-outcome marker (written before the pod is deleted).
MARKER_KEY = "__kpo_finalizer_outcome"


def encode_marker(spec: JobSpec, outcome: Outcome) -> dict[str, Any]:
    """The marker XCom value: the job key and the outcome, nothing else (no payload)."""
    return {"job": spec.key, "outcome": outcome.model_dump(mode="json")}


def decode_marker(value: Any, spec: JobSpec) -> Outcome | None:
    """The outcome recorded by a marker, if it belongs to this very job (ti try + pod uid)."""
    if not isinstance(value, dict) or value.get("job") != spec.key:
        return None
    try:
        return Outcome.model_validate(value.get("outcome"))
    except ValidationError:
        return None
