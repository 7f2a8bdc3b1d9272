"""Experiment tracking: W&B runs + Weave traces (offline by default), and reading them back.

Heavy imports (wandb, weave) happen inside the functions that need them. May import `tools.core` and
`tools.evaluation.metrics` (the reports it logs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.tracking.cloud_store import CloudTrackingStore
    from tools.tracking.env import TrackingSettings, configure_tracking, tracking_settings
    from tools.tracking.evaluation_log import log_evaluation
    from tools.tracking.local_store import LocalTrackingStore
    from tools.tracking.store import open_store
    from tools.tracking.store_models import TrackingStore
    from tools.tracking.wandb_logger import TrainingRunLogger, start_training_run

# Names served from their modules on first use (PEP 562): `tools.tracking.env`, which every command imports
# before parsing its arguments, must not pull in the stores and loggers with it.
_HOME = {
    "TrackingSettings": "env",
    "configure_tracking": "env",
    "tracking_settings": "env",
    "log_evaluation": "evaluation_log",
    "CloudTrackingStore": "cloud_store",
    "LocalTrackingStore": "local_store",
    "TrackingStore": "store_models",
    "open_store": "store",
    "TrainingRunLogger": "wandb_logger",
    "start_training_run": "wandb_logger",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "CloudTrackingStore",
    "LocalTrackingStore",
    "TrackingSettings",
    "TrackingStore",
    "TrainingRunLogger",
    "configure_tracking",
    "log_evaluation",
    "open_store",
    "start_training_run",
    "tracking_settings",
]
