"""The Airflow-facing side of kpo-finalizer: triggers, the KPO subclass, the finalization policy.

``from triggers import FinalizingKubernetesPodOperator, FinalizationPolicy`` — names are imported
lazily, so ``import triggers.policy`` stays light (no provider import).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FinalizationMixin",
    "FinalizationPolicy",
    "FinalizingKubernetesPodOperator",
    "FinalizingPodTrigger",
]

_HOMES = {
    "FinalizationMixin": "triggers.operator",
    "FinalizingKubernetesPodOperator": "triggers.operator",
    "FinalizingPodTrigger": "triggers.pod",
    "FinalizationPolicy": "triggers.policy",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'triggers' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
