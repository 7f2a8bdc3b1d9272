"""Experiment tracking: W&B runs + Weave traces (offline by default), and reading them back.

Heavy imports (wandb, weave) happen inside the functions that need them. May import `tools.core` and
`tools.evaluation.metrics` (the reports it logs).
"""

from tools.tracking.env import TrackingSettings, configure_tracking, tracking_settings
from tools.tracking.evaluation_log import log_evaluation
from tools.tracking.store import CloudTrackingStore, LocalTrackingStore, TrackingStore, open_store
from tools.tracking.wandb_logger import TrainingRunLogger, start_training_run

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
