"""Every kind of student behind one interface, so the loop, the evaluator and the predict command need not
care which it is.

| folder kind | what it serves | module |
|---|---|---|
| `generative` | the base LM with a LoRA adapter, decoding the JSON | `generative`, `decoding`, `generative_training` |
| `regression` | a LoRA-tuned trunk of the LM with a regression head (JSON formatted from six outputs) | `regression`, `regression_training` |
| `ensemble` | the mean of K members (one per CV fold, each its own seed) | `ensemble` |
| `stack` | a per-slice blend of a fold ensemble and cheap models | `stack` |
| `baseline` | a cheap text model (median constant, TF-IDF ridge, additive ridge) | `tools.evaluation.baselines` |

A student folder says which it is by the spec file it holds. No folder means the untouched base model
(generative decoding). `train_student` trains one member (regression or generative); whole candidates
(ensembles, stacks) are trained by `tools.student.recipes`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel

from tools.core.contracts import HParams
from tools.core.schema import Prediction, TrainingRow

# What a single trained member is; a student folder may also hold a stack, a fold ensemble or a baseline.
StudentKind = Literal["regression", "generative"]
FolderKind = Literal["stack", "ensemble", "baseline", "regression", "generative"]

# peft 0.21 calls an accessor transformers 5.24 deprecated; the warning says nothing about our code.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class ServingStudent(Protocol):
    name: str

    def default_decoder(self, requested: str) -> str: ...

    def predict_batch(self, texts: Sequence[str], decoder: str) -> list[Prediction]: ...

    def predict_one(self, text: str, decoder: str) -> Prediction: ...


def student_kind(student_dir: Path) -> FolderKind:
    """What a student folder holds, from the spec file it carries."""
    from tools.evaluation.baselines import TextBaseline
    from tools.student.ensemble import EnsembleStudent
    from tools.student.regression import SPEC_FILE
    from tools.student.stack import StackStudent

    if StackStudent.is_folder(student_dir):
        return "stack"
    if EnsembleStudent.is_folder(student_dir):
        return "ensemble"
    if TextBaseline.is_folder(student_dir):
        return "baseline"
    if (student_dir / SPEC_FILE).is_file():
        return "regression"
    if (student_dir / "adapter_config.json").is_file():
        return "generative"
    raise FileNotFoundError(
        f"{student_dir} is not a student folder (no stack, ensemble, baseline, regression or adapter spec)"
    )


class _Generative:
    def __init__(self, base_model: str, adapter_dir: Path | None) -> None:
        from tools.student.generative import GenerativeStudent

        self._student = GenerativeStudent.load(base_model, adapter_dir)
        self.name = self._student.name

    def default_decoder(self, requested: str) -> str:
        return requested

    def predict_batch(self, texts: Sequence[str], decoder: str) -> list[Prediction]:
        return self._student.predict_batch(texts, decoder=decoder)  # type: ignore[arg-type]

    def predict_one(self, text: str, decoder: str) -> Prediction:
        return self._student.predict_one(text, decoder=decoder)  # type: ignore[arg-type]


class _Regression:
    decoder = "regression"

    def __init__(self, base_model: str, student_dir: Path) -> None:
        from tools.student.regression import RegressionStudent

        self._student = RegressionStudent.load(base_model, student_dir)
        self.name = self._student.name

    def default_decoder(self, requested: str) -> str:
        return self.decoder

    def _check(self, decoder: str) -> None:
        if decoder != self.decoder:
            raise ValueError(f"a regression student has one decoder ('regression'), not {decoder!r}")

    def predict_batch(self, texts: Sequence[str], decoder: str = "regression") -> list[Prediction]:
        self._check(decoder)
        return self._student.predict_batch(texts)

    def predict_one(self, text: str, decoder: str = "regression") -> Prediction:
        self._check(decoder)
        return self._student.predict_one(text)


def load_student(base_model: str, student_dir: Path | None) -> ServingStudent:
    """The base model alone (None), or the student in `student_dir`, whichever kind it is."""
    if student_dir is None:
        return _Generative(base_model, None)
    student_dir = Path(student_dir)
    kind = student_kind(student_dir)
    if kind == "stack":
        from tools.student.stack import StackStudent

        return StackStudent.load(base_model, student_dir)
    if kind == "ensemble":
        from tools.student.ensemble import EnsembleStudent

        return EnsembleStudent.load(base_model, student_dir)
    if kind == "baseline":
        from tools.evaluation.baselines import TextBaseline

        return TextBaseline.load(student_dir)
    if kind == "regression":
        return _Regression(base_model, student_dir)
    return _Generative(base_model, student_dir)


def train_student(
    kind: StudentKind,
    hparams: HParams,
    rows: list[TrainingRow],
    *,
    base_spec: str,
    output_dir: Path,
    seed: int,
    time_budget_s: float | None = None,
    checkpoint_every_steps: int = 25,
    options: dict | None = None,
    on_step: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> BaseModel:
    """Train a student of `kind` with the planner's hyperparameters; resumes from `output_dir`'s checkpoint."""
    if kind == "regression":
        from tools.student.regression import RegressionConfig
        from tools.student.regression_training import train_regression

        config = RegressionConfig.from_hparams(
            hparams,
            **(options or {}),
            seed=seed,
            time_budget_s=time_budget_s,
            checkpoint_every_steps=checkpoint_every_steps,
        )
        return train_regression(
            config,
            rows,
            base_spec,
            output_dir,
            on_step=(lambda step, loss: on_step({"step": step, "loss": loss})) if on_step else None,
            progress=progress,
        )
    from tools.student.generative_training import TrainConfig, train_lora

    config = TrainConfig.from_hparams(
        hparams,
        **(options or {}),
        seed=seed,
        time_budget_s=time_budget_s,
        checkpoint_every_steps=checkpoint_every_steps,
    )
    return train_lora(config, rows, base_spec, output_dir, on_step=on_step, progress=progress)
