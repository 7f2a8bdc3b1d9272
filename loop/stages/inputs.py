"""What every stage reads: the loop config the run saved, the dataset, the frozen validation rows, the plan."""

from __future__ import annotations

from pathlib import Path

from loop.config import LoopConfig
from tools.core.atomic import atomic_write_json
from tools.core.contracts import CyclePlan
from tools.core.paths import cycle_dir, loop_dir
from tools.core.schema import TrainingRow
from tools.data.dataset import DatasetSplits, load_dataset

CONFIG_FILE = "config.json"


def save_config(config: LoopConfig) -> None:
    atomic_write_json(loop_dir() / CONFIG_FILE, config)


def load_loop_config() -> LoopConfig:
    path = loop_dir() / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: start cycles with python -m loop.run")
    return LoopConfig.model_validate_json(path.read_text())


def dataset(config: LoopConfig) -> DatasetSplits:
    return load_dataset(config.data)


def valid_rows(config: LoopConfig, data: DatasetSplits) -> list[TrainingRow]:
    return data.valid[: config.max_eval_rows]


def candidate_dir(cycle: int, name: str) -> Path:
    """Everything one candidate of a cycle has: its training set, student, records and evaluation."""
    return cycle_dir(cycle) / "candidates" / name


def read_plan(cycle: int) -> CyclePlan:
    return CyclePlan.model_validate_json((cycle_dir(cycle) / "plan.json").read_text())
