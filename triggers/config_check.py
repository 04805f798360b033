"""Every problem of ``[kpo_finalizer]``, found the way the triggerer reads it: ``check-config``.

The triggerer reads the section one option at a time (``triggers.settings``): the finalizer's
settings (``FinalizerConfig``) when its first trigger starts, the per-task defaults
(``triggers.policy``) whenever a trigger resolves its policy. An invalid value makes the
finalizer refuse to start, so every task takes the classic path; a misspelt option is never
read at all. Both used to show only as one line in each task's log. Here they are all found at
once, one ``Problem`` per bad or unknown option:

- ``kpo-finalizer check-config`` prints them (and tests the ledger connection), exit 1 on any;
- inside the triggerer ``report_once`` (in a thread, off the event loop) logs them at ERROR in
  the triggerer's own log, once per process, and counts them in ``kpo_finalizer.config_problems``.

A secret option's value (``SECRET_OPTIONS``) is never printed, nor any unknown option's value
(a misspelt ``ledger_url`` is still a secret).
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from finalizer.config import CONFIG_SECTION, ENV_PREFIX, FinalizerConfig
from finalizer.exceptions import ConfigurationError
from triggers.policy import POLICY_OPTIONS, policy_config_problems
from triggers.settings import ConfigReader, airflow_option, env_name, read_options, set_option_sources

log = logging.getLogger(__name__)

#: Every option the triggerer reads from ``[kpo_finalizer]``.
KNOWN_OPTIONS = frozenset(FinalizerConfig.model_fields) | POLICY_OPTIONS


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad or unknown option (``option`` is ``<settings>`` for a rule between options)."""

    option: str
    message: str

    def line(self) -> str:
        return f"[{CONFIG_SECTION}] {self.message}" if not self.message.startswith("[") else self.message


def closest_option(name: str) -> str | None:
    """The known option ``name`` was probably meant to be (difflib), or None."""
    matches = difflib.get_close_matches(name, sorted(KNOWN_OPTIONS), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_option_problems(sources: Mapping[str, str]) -> list[Problem]:
    """Options set but never read; each names the closest known one. Values are not shown."""
    problems = []
    for name in sorted(set(sources) - KNOWN_OPTIONS):
        guess = closest_option(name)
        hint = f"; did you mean {guess!r} ({env_name(guess)})?" if guess else ""
        problems.append(Problem(name, f"unknown option {name!r} (set in {sources[name]}) is ignored{hint}"))
    return problems


def value_problems(read: ConfigReader = airflow_option) -> list[Problem]:
    """Every known option's value, validated as the triggerer validates it."""
    problems = [
        Problem(option, message if option not in KNOWN_OPTIONS else f"{message} ({env_name(option)})")
        for option, message in FinalizerConfig.problems(read_options(FinalizerConfig.model_fields, read))
    ]
    # xcom_max_bytes is read by both halves: a bad value is reported once.
    reported = {p.option for p in problems}
    problems.extend(Problem(o, m) for o, m in policy_config_problems(read) if o not in reported)
    url = read("ledger_url")
    if url and "ledger_url" not in reported:
        from finalizer.ledger.readonly import parse_ledger_url

        try:
            parse_ledger_url(url)
        except ConfigurationError as exc:
            problems.append(Problem("ledger_url", f"ledger_url ({env_name('ledger_url')}): {exc}"))
    return problems


def find_problems(
    read: ConfigReader = airflow_option, sources: Mapping[str, str] | None = None
) -> list[Problem]:
    """Unknown options, then bad values. ``sources`` defaults to what Airflow has set."""
    return unknown_option_problems(set_option_sources() if sources is None else sources) + value_problems(
        read
    )


def configured(read: ConfigReader = airflow_option) -> FinalizerConfig:
    """The finalizer's settings as the triggerer builds them (``ConfigurationError`` if invalid)."""
    return FinalizerConfig.from_mapping(read_options(FinalizerConfig.model_fields, read))


def airflow_installed() -> bool:
    """Whether Airflow's configuration can be read here (the ``airflow`` extra is optional)."""
    try:
        import airflow.configuration  # noqa: F401
    except ImportError:
        return False
    return True


def standalone_option(key: str) -> str | None:
    """``KPO_FINALIZER_<KEY>``: the settings of a finalizer run outside Airflow (``from_env``)."""
    return os.environ.get(ENV_PREFIX + key.upper())


def status_source(
    ledger_url: str | None, state_dir: str | None, read: ConfigReader | None = None
) -> tuple[str, float]:
    """The ledger ``status`` reads and the stale threshold it judges instances by.

    Explicit arguments win; the rest comes from ``[kpo_finalizer]`` as the triggerer reads it
    (only the options ``status`` needs, so an unrelated bad value does not hide the status), or
    from ``KPO_FINALIZER_*`` where Airflow is not installed.
    """
    if read is None:
        read = airflow_option if airflow_installed() else standalone_option
    wanted = ("ledger_url", "state_dir", "heartbeat_interval", "stale_threshold")
    values = read_options(wanted, read)
    if ledger_url is not None:
        values["ledger_url"] = ledger_url
    if state_dir is not None:
        values.pop("ledger_url", None)
        values["state_dir"] = state_dir
    config = FinalizerConfig.from_mapping(values)
    return config.resolved_ledger_url, config.stale_threshold


def airflow_trigger_counter() -> Callable[[], int]:
    """``status --airflow-db``: counts ``FinalizingPodTrigger`` rows in Airflow's trigger table."""
    from triggers.airflow_db import count_finalizing_triggers

    return count_finalizing_triggers


# -- inside the triggerer -------------------------------------------------------------------------

_REPORTED = False
_REPORT_LOCK = threading.Lock()


async def report_once_off_loop(
    read: ConfigReader = airflow_option, sources: Mapping[str, str] | None = None
) -> int:
    """``report_once`` in a worker thread: it reads Airflow's configuration (files, secrets
    backends), which must not stall the triggerer's event loop and every trigger on it.

    Only the process's first call leaves the loop; later ones return 0 at once.
    """
    if _REPORTED:
        return 0
    return await asyncio.to_thread(report_once, read, sources)


def report_once(read: ConfigReader = airflow_option, sources: Mapping[str, str] | None = None) -> int:
    """Log every problem at ERROR, once per process (the first trigger's start); count them.

    Returns the number of problems logged (0 on every later call). Never raises: a failure of
    the check itself is logged, and the finalizer's start-up reports what it finds anyway.
    Thread-safe: triggers starting together report once.
    """
    global _REPORTED
    with _REPORT_LOCK:
        if _REPORTED:
            return 0
        _REPORTED = True
    try:
        problems = find_problems(read, sources)
    except Exception:
        contextvars.Context().run(log.exception, "kpo-finalizer could not check [%s]", CONFIG_SECTION)
        return 0
    # Airflow's runner binds the trigger's id in context variables, and a record carrying it goes
    # to that task's log: an empty context sends these lines to the triggerer's own log.
    contextvars.Context().run(_log_problems, problems)
    return len(problems)


def _log_problems(problems: list[Problem]) -> None:
    from finalizer.metrics import METRICS

    for problem in problems:
        log.error("kpo-finalizer configuration problem: %s", problem.line())
        METRICS.config_problems.inc(option=problem.option)
    if problems:
        log.error(
            "kpo-finalizer: %d problem(s) in [%s]; run 'kpo-finalizer check-config' where the triggerer "
            "runs. An invalid value sends every task down the classic path (worker re-entry).",
            len(problems),
            CONFIG_SECTION,
        )


# -- kpo-finalizer check-config -------------------------------------------------------------------


def run_check_config(
    *, skip_ledger: bool = False, out: TextIO | None = None, read: ConfigReader = airflow_option
) -> int:
    """Print one line per problem and 'OK' lines otherwise; exit 1 on any problem, 2 without Airflow."""
    stream = out or sys.stdout
    if read is airflow_option and not airflow_installed():
        print(
            f"kpo-finalizer check-config: Airflow is not installed here, so [{CONFIG_SECTION}] cannot be "
            "read as the triggerer reads it; run it where the triggerer runs "
            "(pip install 'kpo-finalizer[airflow]')",
            file=stream,
        )
        return 2
    problems = find_problems(read)
    for problem in problems:
        print(f"PROBLEM {problem.line()}", file=stream)
    ledger_ok = True
    if not skip_ledger:
        ledger_ok = _check_ledger(read, stream)
    if problems or not ledger_ok:
        total = len(problems) + (0 if ledger_ok else 1)
        print(f"kpo-finalizer check-config: {total} problem(s)", file=stream)
        return 1
    print(f"kpo-finalizer check-config: [{CONFIG_SECTION}] is valid", file=stream)
    return 0


def _check_ledger(read: ConfigReader, stream: TextIO) -> bool:
    import anyio

    from finalizer.exceptions import LedgerError
    from finalizer.ledger.readonly import probe_ledger

    try:
        config = configured(read)
    except ConfigurationError:
        # Already reported per option; the ledger may still be reachable with its own options.
        try:
            url, _ = status_source(None, None, read)
        except ConfigurationError:
            print("PROBLEM ledger: not tested (its own options are invalid)", file=stream)
            return False
    else:
        url = config.resolved_ledger_url
    try:
        message = anyio.run(probe_ledger, url)
    except (LedgerError, ConfigurationError) as exc:
        print(f"PROBLEM ledger: {exc}", file=stream)
        return False
    print(f"OK ledger: {message}", file=stream)
    return True
