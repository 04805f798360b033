"""The one reader of Airflow's ``[kpo_finalizer]`` section.

Both halves of the configuration come from here: the process-wide finalizer's settings
(``finalizer.config.FinalizerConfig``, read when the triggerer's first trigger starts it) and
the per-task policy defaults (``triggers.policy``). Options are read one key at a time through
``conf.get``, which applies Airflow's own precedence: ``AIRFLOW__KPO_FINALIZER__<KEY>`` over
``airflow.cfg`` over nothing (unset options are absent, so our own defaults apply).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from finalizer.config import CONFIG_SECTION

#: Reads one raw string option from ``[kpo_finalizer]`` (None when unset).
ConfigReader = Callable[[str], str | None]


def airflow_option(key: str) -> str | None:
    """``[kpo_finalizer] <key>`` as Airflow resolves it, or None when unset (imported lazily)."""
    from airflow.configuration import conf

    value = conf.get(CONFIG_SECTION, key, fallback=None)
    return None if value is None else str(value)


def read_options(keys: Iterable[str], read: ConfigReader = airflow_option) -> dict[str, str]:
    """The options among ``keys`` that are set, as raw strings."""
    values: dict[str, str] = {}
    for key in keys:
        value = read(key)
        if value is not None:
            values[key] = value
    return values


#: Prefix of the environment variables Airflow reads for ``[kpo_finalizer]``.
ENV_PREFIX = f"AIRFLOW__{CONFIG_SECTION.upper()}__"


def env_name(key: str) -> str:
    """``AIRFLOW__KPO_FINALIZER__<KEY>``."""
    return ENV_PREFIX + key.upper()


def set_option_sources(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every option set in ``[kpo_finalizer]`` (known or not) → where: the variable, or ``airflow.cfg``.

    The environment wins, as in ``conf.get``. Unknown names are what ``check-config`` reports.
    """
    from airflow.configuration import conf

    sources: dict[str, str] = {}
    if conf.has_section(CONFIG_SECTION):
        for key in conf.options(CONFIG_SECTION):
            sources[key.lower()] = "airflow.cfg"
    for name in os.environ if environ is None else environ:
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            sources[name[len(ENV_PREFIX) :].lower()] = name
    return sources
