"""The regression student: a truncated base LM + LoRA on its upper kept layers + a head on the mean-pooled
hidden state. No generation at all: one forward pass per request, the JSON is formatted from the six numbers.

Layout of a student folder (written by `tools.student.regression_training.train_regression`):
    regression_student.json   `StudentSpec`: the config, the learned input filter, target scaling
    adapter/                  the peft LoRA adapter (`save_pretrained`) on the truncated trunk
    head.safetensors          the head's weights
    training_record.json      `RegressionTrainResult`
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.core.contracts import HParams, refuse_hparam_overrides
from tools.core.schema import DIMS, SCALE_MAX, SCALE_MIN, Prediction, TrainingRow
from tools.evaluation.baselines import format_values

SPEC_FILE = "regression_student.json"
ADAPTER_DIR = "adapter"
HEAD_FILE = "head.safetensors"
RECORD_FILE = "training_record.json"
N_LEVELS = SCALE_MAX - SCALE_MIN + 1
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class RegressionConfig(BaseModel):
    """Every knob of the regression student, in one place."""

    model_config = ConfigDict(extra="forbid")

    layers_kept: int | None = Field(
        4,
        ge=1,
        description="truncate the base to its first N decoder layers and pool the output of layer N "
        "(after the final norm); None keeps every layer. Fewer layers = faster training and serving",
    )
    lora_layers: int = Field(
        2,
        ge=0,
        description="LoRA on the last M of the kept layers; the layers below are frozen and their outputs "
        "are computed once and cached (0 = frozen trunk, only the head trains)",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch")
    lora_targets: list[str] = Field(
        default_factory=lambda: list(ALL_PROJECTIONS), description="projection modules that get LoRA"
    )
    learning_rate: float = Field(5e-4, gt=0, description="peak learning rate of the LoRA weights (cosine)")
    head_learning_rate: float = Field(3e-3, gt=0, description="peak learning rate of the head (cosine)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (LoRA and head weights)")
    warmup_fraction: float = Field(0.06, ge=0, lt=1, description="share of steps spent warming up")
    epochs: float = Field(3.0, gt=0, description="passes over the training rows (fractions allowed)")
    batch_size: int = Field(16, ge=1, description="rows per optimizer step")
    seed: int = Field(0, description="seeds LoRA init, head init, batch order and dropout")
    head: Literal["linear", "ordinal"] = Field(
        "linear",
        description="linear: six numbers from the pooled state. ordinal: a distribution over 0..10 per "
        "dim, trained on soft labels, decoded by `ordinal_decode`",
    )
    loss: Literal["mse", "huber", "l1"] = Field("mse", description="loss of the linear head")
    standardize_targets: bool = Field(
        True, description="linear head predicts (y - train mean) / train std per dim"
    )
    ordinal_sigma: float = Field(
        0.75, gt=0, description="std (in score units) of the Gaussian soft label around the target"
    )
    ordinal_decode: Literal["mean", "median"] = Field(
        "mean", description="expected value, or the median of the predicted distribution (MAE-optimal)"
    )
    drop_common_lines: float | None = Field(
        0.2,
        gt=0,
        le=1,
        description="drop input lines that appear verbatim in at least this share of training rows "
        "(a template's boilerplate: it carries no signal and costs latency); None keeps every line",
    )
    prompt_prefix: str = Field("", description="text put before the request (kept short: latency)")
    max_length: int = Field(160, ge=8, description="tokens kept per request (truncation)")
    checkpoint_every_steps: int = Field(25, ge=1, description="write a resumable checkpoint every N steps")
    time_budget_s: float | None = Field(
        None, gt=0, description="stop training after this many seconds (the record says so)"
    )
    quantize_int8: bool = Field(False, description="serve with int8 dynamic quantization of Linear layers")

    @classmethod
    def from_hparams(cls, hparams: HParams, **overrides: object) -> RegressionConfig:
        """The planner's knobs mapped onto this student; grad_accum folds into the batch (cached features).
        `overrides` set the student's other knobs, never a hyperparameter: those come through `hparams`
        only, the values the guardrails bounded."""
        refuse_hparam_overrides(overrides)
        values: dict[str, object] = dict(
            learning_rate=hparams.learning_rate,
            lora_r=hparams.lora_r,
            lora_alpha=hparams.lora_alpha,
            lora_dropout=hparams.lora_dropout,
            epochs=hparams.epochs,
            batch_size=hparams.batch_size * hparams.grad_accum,
        )
        values.update(overrides)
        return cls(**values)


class TargetScaling(BaseModel):
    mean: list[float]
    std: list[float]


class StudentSpec(BaseModel):
    """What a student folder needs to be rebuilt on top of its base model."""

    base_spec: str
    n_base_layers: int
    layers_kept: int
    config: RegressionConfig
    common_lines: list[str]
    scaling: TargetScaling


# ---------------------------------------------------------------- inputs


def learn_common_lines(texts: Sequence[str], min_fraction: float | None) -> list[str]:
    """Lines that appear verbatim in at least `min_fraction` of the texts (learned on training rows only)."""
    if min_fraction is None or not texts:
        return []
    counts = Counter(line for text in texts for line in set(text.split("\n")))
    return sorted(line for line, n in counts.items() if n >= min_fraction * len(texts))


def format_input(text: str, common_lines: Sequence[str], prefix: str = "") -> str:
    """The model input: the request without boilerplate lines (never emptied), behind an optional prefix."""
    common = set(common_lines)
    kept = "\n".join(line for line in text.split("\n") if line not in common).strip()
    return prefix + (kept or text.strip())


def target_scaling(rows: Sequence[TrainingRow], standardize: bool) -> TargetScaling:
    import numpy as np

    targets = np.array([r.target.as_list() for r in rows], dtype=float)
    if not standardize:
        return TargetScaling(mean=[0.0] * len(DIMS), std=[1.0] * len(DIMS))
    return TargetScaling(mean=targets.mean(0).tolist(), std=np.maximum(targets.std(0), 0.5).tolist())


# ---------------------------------------------------------------- model pieces


def truncate_trunk(causal_lm, layers_kept: int | None):
    """The decoder trunk (a LlamaModel-like module) cut to its first `layers_kept` layers; lm_head dropped."""
    import torch

    trunk = causal_lm.model
    n = len(trunk.layers)
    kept = n if layers_kept is None else layers_kept
    if kept > n:
        raise ValueError(f"layers_kept={kept} but the base model has only {n} layers")
    trunk.layers = torch.nn.ModuleList(list(trunk.layers)[:kept])
    trunk.config.num_hidden_layers = kept
    return trunk, n


def run_layers(trunk, hidden, attention_mask, layers):
    """Decoder layers over hidden states, exactly as the trunk's own forward runs them (no cache)."""
    import torch
    from transformers.masking_utils import create_causal_mask

    position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    causal_mask = create_causal_mask(
        config=trunk.config,
        inputs_embeds=hidden,
        attention_mask=attention_mask,
        cache=None,
        position_ids=position_ids,
    )
    position_embeddings = trunk.rotary_emb(hidden, position_ids=position_ids)
    for layer in layers:
        hidden = layer(
            hidden,
            attention_mask=causal_mask,
            position_embeddings=position_embeddings,
            position_ids=position_ids,
        )
    return hidden


def mean_pool(hidden, attention_mask):
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def build_head(hidden_size: int, config: RegressionConfig):
    """Per-feature standardisation of the pooled state (LM states have a few huge dims), then a linear map."""
    import torch

    class _Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            out = len(DIMS) * (N_LEVELS if config.head == "ordinal" else 1)
            self.register_buffer("feature_mean", torch.zeros(hidden_size))
            self.register_buffer("feature_std", torch.ones(hidden_size))
            self.linear = torch.nn.Linear(hidden_size, out)

        def forward(self, pooled):
            return self.linear((pooled - self.feature_mean) / self.feature_std)

    return _Head()


def init_head(
    head, config: RegressionConfig, rows: Sequence[TrainingRow], scaling: TargetScaling, pooled
) -> None:
    """Feature scaling from the training rows' pooled states; zero weights; the bias starts at the training
    answer (the scaled mean, or the marginal distribution over 0..10)."""
    import torch

    with torch.no_grad():
        head.feature_mean.copy_(pooled.mean(0))
        head.feature_std.copy_(pooled.std(0).clamp(min=1e-4))
        head.linear.weight.zero_()
        if config.head == "linear":
            head.linear.bias.zero_()
            if not config.standardize_targets:
                head.linear.bias.copy_(torch.tensor(scaling.mean))
            return
        counts = torch.ones(len(DIMS), N_LEVELS)
        for row in rows:
            for i, v in enumerate(row.target.as_list()):
                counts[i, v - SCALE_MIN] += 1
        head.linear.bias.copy_((counts / counts.sum(1, keepdim=True)).log().reshape(-1))


def head_outputs_to_values(outputs, config: RegressionConfig, scaling: TargetScaling):
    """Head outputs -> (batch, 6) floats on the 0..10 scale (clipped)."""
    import torch

    if config.head == "linear":
        mean = torch.tensor(scaling.mean, dtype=outputs.dtype)
        std = torch.tensor(scaling.std, dtype=outputs.dtype)
        values = outputs * std + mean
    else:
        probs = outputs.view(-1, len(DIMS), N_LEVELS).softmax(-1)
        levels = torch.arange(SCALE_MIN, SCALE_MAX + 1, dtype=outputs.dtype)
        if config.ordinal_decode == "mean":
            values = (probs * levels).sum(-1)
        else:
            below_half = (probs.cumsum(-1) < 0.5).sum(-1)
            values = (below_half + SCALE_MIN).to(outputs.dtype)
    return values.clamp(SCALE_MIN, SCALE_MAX)


# ---------------------------------------------------------------- serving


class RegressionStudent:
    """A trained regression student, loaded for serving: LoRA merged, trunk truncated, optional int8."""

    decoder = "regression"

    def __init__(self, trunk, head, tokenizer, spec: StudentSpec, name: str) -> None:
        self.trunk = trunk
        self.head = head
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = name

    @classmethod
    def load(
        cls, base_spec: str | None, student_dir: Path, *, quantize_int8: bool | None = None
    ) -> RegressionStudent:
        """Rebuild from a student folder; `base_spec=None` uses the base recorded in the folder,
        `quantize_int8=None` the folder's own serving choice."""
        import torch
        from peft import PeftModel
        from safetensors.torch import load_file

        from tools.student.base_model import load_base

        student_dir = Path(student_dir)
        spec = StudentSpec.model_validate_json((student_dir / SPEC_FILE).read_text())
        model, tokenizer = load_base(base_spec or spec.base_spec)
        trunk, n_layers = truncate_trunk(model, spec.layers_kept)
        if n_layers != spec.n_base_layers:
            raise ValueError(
                f"{student_dir} was trained on a base with {spec.n_base_layers} layers, got {n_layers}"
            )
        if (student_dir / ADAPTER_DIR).is_dir():
            trunk = PeftModel.from_pretrained(trunk, student_dir / ADAPTER_DIR).merge_and_unload()
        head = build_head(trunk.config.hidden_size, spec.config)
        head.load_state_dict(load_file(student_dir / HEAD_FILE))
        trunk.eval()
        head.eval()
        use_int8 = spec.config.quantize_int8 if quantize_int8 is None else quantize_int8
        if use_int8:
            import warnings

            from torch.ao.quantization import quantize_dynamic

            # torch.ao is deprecated in favour of torchao but still works in the pinned torch 2.13.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trunk = quantize_dynamic(trunk, {torch.nn.Linear}, dtype=torch.qint8)
        tokenizer.padding_side = "right"
        return cls(trunk, head, tokenizer, spec, name=f"regression:{student_dir.name}")

    def _values(self, texts: Sequence[str]):
        import torch

        inputs = [format_input(t, self.spec.common_lines, self.spec.config.prompt_prefix) for t in texts]
        enc = self.tokenizer(
            inputs,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.spec.config.max_length,
        )
        with torch.inference_mode():
            hidden = self.trunk(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
            ).last_hidden_state
            outputs = self.head(mean_pool(hidden, enc["attention_mask"]))
            return head_outputs_to_values(outputs, self.spec.config, self.spec.scaling).tolist()

    def predict_batch(
        self, texts: Sequence[str], batch_size: int = 16, decoder: str | None = None
    ) -> list[Prediction]:
        """Predictions for many requests; latency_ms is each batch's wall time shared by its rows."""
        self._check_decoder(decoder)
        predictions: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            began = time.perf_counter()
            rows = self._values(chunk)
            per_row_ms = (time.perf_counter() - began) * 1000 / len(chunk)
            predictions.extend(self._prediction(values, per_row_ms) for values in rows)
        return predictions

    def predict_one(self, text: str, decoder: str | None = None) -> Prediction:
        """One request, latency measured end to end (tokenize, forward, format)."""
        self._check_decoder(decoder)
        began = time.perf_counter()
        values = self._values([text])[0]
        return self._prediction(values, (time.perf_counter() - began) * 1000)

    def _check_decoder(self, decoder: str | None) -> None:
        """The evaluation harness names a decoder per call; this student has exactly one."""
        if decoder not in (None, self.decoder):
            raise ValueError(f"a regression student has no {decoder!r} decoder (only {self.decoder!r})")

    @staticmethod
    def _prediction(values: Sequence[float], latency_ms: float) -> Prediction:
        return Prediction(
            values=[float(v) for v in values],
            raw_output=format_values(values),
            json_valid=True,
            served_by="model",
            latency_ms=latency_ms,
        )
