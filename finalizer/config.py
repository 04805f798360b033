"""Settings of the process-wide finalizer, validated once before any work starts.

One frozen model, loadable from a mapping (the Airflow side feeds it the ``[kpo_finalizer]``
section) or from ``KPO_FINALIZER_*`` environment variables. Anything invalid becomes a
``ConfigurationError`` that names every bad field: a typo must stop start-up, not surface as
a hung job hours later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api_client.backoff import RetryPolicy
from finalizer.exceptions import ConfigurationError
from finalizer.loops import EventLoopChoice

ENV_PREFIX = "KPO_FINALIZER_"
#: The Airflow configuration section (``airflow.cfg`` / ``AIRFLOW__KPO_FINALIZER__*``) of every option.
CONFIG_SECTION = "kpo_finalizer"
#: Options whose values never appear in an error message (a ledger URL may carry a password).
SECRET_OPTIONS = frozenset({"ledger_url"})

#: The I/O steps a job makes, each with its own retry policy.
RETRY_STEPS = ("read_pod", "read_xcom", "push_xcom", "diagnostics", "stop_sidecar", "cleanup", "ledger")


class StepRetry(BaseModel):
    """A ``RetryPolicy`` in config form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=6, ge=1, le=100)
    base_delay: float = Field(default=0.2, ge=0)
    max_delay: float = Field(default=10.0, ge=0)
    deadline: float | None = Field(default=120.0, gt=0)
    jitter: float = Field(default=0.5, ge=0, le=1)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            deadline=self.deadline,
            jitter=self.jitter,
        )


#: The ledger's default retry: up to ``ledger_deadline`` (``deadline=None``), waits capped at 2 s so
#: a ledger that comes back is used again within about 2 s.
LEDGER_RETRY = StepRetry(max_attempts=100, base_delay=0.1, max_delay=2.0, deadline=None)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kpo-finalizer"


class FinalizerConfig(BaseModel):
    """Everything the dedicated loop needs to know. Immutable once built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Where the embedded SQLite ledger lives when ``ledger_url`` is not given.
    state_dir: Path = Field(default_factory=_default_state_dir)
    #: SQLAlchemy URL: ``sqlite:///…`` (the stdlib driver in a worker thread; ``sqlite+aiosqlite``
    #: is accepted as the same) or ``postgresql+asyncpg://…``.
    ledger_url: str | None = None
    #: The ledger may be unreachable this long (seconds) before the loop fails loudly.
    ledger_deadline: float = Field(default=60.0, gt=0)

    #: Jobs actively finalizing at once, per cluster (waiting for completion does not count).
    concurrency_per_cluster: int = Field(default=32, ge=1, le=10_000)
    #: Jobs tracked at once (waiting + running); further submissions wait for room.
    queue_bound: int = Field(default=10_000, ge=1)

    heartbeat_interval: float = Field(default=5.0, gt=0)
    #: An instance whose heartbeat is older than this is dead: its jobs may be adopted.
    stale_threshold: float = Field(default=30.0, gt=0)
    #: How often to look for stale jobs to adopt (0 disables adoption).
    adopt_interval: float = Field(default=10.0, ge=0)
    #: Period of the loop-lag probe.
    lag_tick_interval: float = Field(default=0.25, gt=0)

    #: Per-step retry policies (keys from ``RETRY_STEPS``); missing steps use the default.
    retry: dict[str, StepRetry] = Field(default_factory=dict)
    #: XCom payloads already pushed to Airflow are purged from the ledger after this many seconds.
    payload_retention: float = Field(default=24 * 3600.0, ge=0)
    #: How often the payload purge runs.
    maintenance_interval: float = Field(default=60.0, gt=0)
    #: Default XCom size cap in bytes (a job's own ``FinishSettings.xcom_max_bytes`` may be lower).
    xcom_max_bytes: int = Field(default=1024 * 1024, gt=0)
    #: Most bytes of a container's log written to the task log; then one "truncated" line.
    log_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    #: Write the ``__kpo_finalizer_outcome`` XCom (decisions/marker.py); false only with a shared
    #: PostgreSQL ledger, which then is the only record a re-run trigger finds.
    outcome_marker: bool = True
    #: On shutdown, wait this long for in-flight jobs before parking them.
    drain_timeout: float = Field(default=30.0, ge=0)
    #: XCom calls in flight at once through the triggerer's supervisor (it serves them one at a
    #: time; every other trigger's events queue behind them).
    supervisor_calls_in_flight: int = Field(default=4, ge=1, le=64)
    #: Timeout (seconds) of each single Kubernetes / XCom call.
    call_timeout: float = Field(default=30.0, gt=0)
    #: The dedicated loop: ``auto`` runs uvloop when it is installed (less CPU per pod), else asyncio.
    event_loop: EventLoopChoice = "auto"

    @model_validator(mode="after")
    def _check(self) -> FinalizerConfig:
        unknown = sorted(set(self.retry) - set(RETRY_STEPS))
        if unknown:
            raise ValueError(f"unknown retry step(s) {unknown}; known: {list(RETRY_STEPS)}")
        if self.stale_threshold <= self.heartbeat_interval:
            raise ValueError(
                f"stale_threshold ({self.stale_threshold}s) must exceed heartbeat_interval "
                f"({self.heartbeat_interval}s), or live instances would be taken for dead"
            )
        if not self.outcome_marker and not self.resolved_ledger_url.startswith("postgresql"):
            raise ValueError(
                "outcome_marker = false needs a PostgreSQL ledger shared by every triggerer: with a "
                "local SQLite ledger a re-run trigger on another triggerer finds no record"
            )
        return self

    @property
    def resolved_ledger_url(self) -> str:
        """The ledger URL, defaulting to a SQLite file under ``state_dir``."""
        if self.ledger_url:
            return self.ledger_url
        return f"sqlite:///{self.state_dir / 'ledger.sqlite3'}"

    def retry_policy(self, step: str) -> RetryPolicy:
        """The retry policy for one I/O step."""
        if step not in RETRY_STEPS:
            raise ConfigurationError(f"unknown retry step {step!r}")
        return self.retry.get(step, StepRetry()).policy()

    def ledger_policy(self) -> RetryPolicy:
        """The ledger's retry policy, never retrying past ``ledger_deadline``. Unless configured,
        bounded by that deadline only, not by a count of attempts: a refused connection fails in
        milliseconds, and a PostgreSQL restart takes seconds."""
        configured = self.retry.get("ledger")
        policy = (configured or LEDGER_RETRY).policy()
        deadline = (
            self.ledger_deadline if policy.deadline is None else min(policy.deadline, self.ledger_deadline)
        )
        return replace(policy, deadline=deadline)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FinalizerConfig:
        """Build from a mapping (strings allowed, as from an ini section)."""
        data = _prepared(values)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(describe_validation_error(exc, "kpo-finalizer configuration")) from exc

    @classmethod
    def problems(cls, values: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Every problem of ``values`` as ``(option, message)``, one per bad field (empty: valid).

        What ``from_mapping`` would refuse, split by option for ``check-config``; a secret
        option's value is never in the message.
        """
        try:
            data = _prepared(values)
            cls.model_validate(data)
        except ConfigurationError as exc:  # retry is not JSON
            return [("retry", str(exc).removeprefix(f"{CONFIG_SECTION} "))]
        except ValidationError as exc:
            return validation_problems(exc)
        return []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> FinalizerConfig:
        """Build from ``KPO_FINALIZER_<FIELD>`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            value = env.get(ENV_PREFIX + name.upper())
            if value is not None:
                data[name] = value
        data.update(overrides)
        return cls.from_mapping(data)


def _prepared(values: Mapping[str, Any]) -> dict[str, Any]:
    """Ini-style strings made model input: ``retry`` JSON parsed, an empty ``ledger_url`` unset."""
    data = dict(values)
    retry = data.get("retry")
    if isinstance(retry, str):
        try:
            data["retry"] = json.loads(retry) if retry.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"kpo_finalizer retry: not valid JSON ({exc})") from exc
    for key in ("ledger_url",):
        if data.get(key) == "":
            data[key] = None
    return data


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, "field=value: what is wrong")`` per error; never a secret option's value.

    A cross-field rule (no location) is reported under ``<settings>``.
    """
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "<settings>"
        if not loc:  # a rule between options (the model validator): its message names them
            problems.append((field, str(err["msg"]).removeprefix("Value error, ")))
        elif "input" not in err or loc[0] in SECRET_OPTIONS:
            problems.append((loc[0], f"{field}: {err['msg']}"))
        else:
            problems.append((loc[0], f"{field}={err['input']!r}: {err['msg']}"))
    return problems


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming every bad field, its value (never a secret's) and what is wrong with it.

    The one formatter for the finalizer's settings and the per-task ``FinalizationPolicy``.
    """
    return f"invalid {source}: " + "; ".join(message for _, message in validation_problems(exc))
