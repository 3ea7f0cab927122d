"""rvpo: risk-sensitive multi-reward RL fine-tuning (RVPO soft-min advantages) for TRL and verl.

Importing ``rvpo`` loads nothing heavy and changes no environment: the names below come from
:mod:`rvpo.core` on first use (PEP 562), so ``rvpo.cli`` can set its process defaults before torch loads.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = [
    "AdvantageOutput", "AdvantageParams", "compute_advantages", "get_estimator", "make_schedule",
    "register_estimator", "soft_min", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("rvpo.core"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rvpo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
