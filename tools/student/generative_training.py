"""LoRA fine-tuning of the student on request -> JSON pairs, with checkpoints and resume.

The fast path: rows are left padded with explicit position ids, so every row's
answer sits at the end of the batch and only the last `completion + 1` positions go through the vocabulary
projection (`logits_to_keep`); batches are bucketed by length. The loss covers the assistant answer only
(skeleton, values, end of turn), with the value tokens weighted separately.

Resume: `train_lora` on an `output_dir` that holds a checkpoint continues from it. The batch order is a
pure function of (seed, epoch), and a checkpoint holds adapter, optimizer, scheduler and RNG state, so an
interrupted run ends with the same adapter as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field

from tools.core.atomic import atomic_write_json
from tools.core.contracts import HParams, refuse_hparam_overrides
from tools.core.progress import Progress
from tools.core.schema import TrainingRow
from tools.data.dataset import data_hash
from tools.student.base_model import load_base, record_base_spec
from tools.student.decoding import SkeletonTokens, prompt_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

RECORD_NAME = "training_record.json"
CHECKPOINTS = "checkpoints"
LENGTH_BUCKET_BATCHES = 16  # batches sorted by length together: short pads, still well shuffled
ATTENTION_AND_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(BaseModel):
    """Every knob of one LoRA training run."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (linear warmup, cosine decay)")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch")
    epochs: float = Field(1.0, gt=0, description="passes over the rows (fractions allowed)")
    batch_size: int = Field(8, ge=1, description="rows per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_length: int = Field(384, ge=16, description="prompt + answer tokens; a longer row is an error")
    target_modules: list[str] = Field(
        default_factory=lambda: list(ATTENTION_AND_MLP), description="module names that get LoRA"
    )
    layers_to_transform: list[int] | None = Field(
        None, description="layer indices that get LoRA (None = all); upper layers only is ~2x faster"
    )
    seed: int = Field(0, description="seeds LoRA init, dropout and the batch order")
    checkpoint_every_steps: int = Field(50, ge=1, description="optimizer steps between checkpoints")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="fraction of steps of linear warmup")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    value_token_weight: float = Field(1.0, ge=0, description="loss weight of the value (digit) tokens")
    format_token_weight: float = Field(
        1.0, ge=0, description="loss weight of skeleton / end-of-turn tokens (0 = loss on values only)"
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="stop after the step that crosses this wall time and save the adapter"
    )

    @classmethod
    def from_hparams(cls, hparams: HParams, **overrides: object) -> TrainConfig:
        """The planner's hyperparameters mapped onto the trainer; `overrides` set any other knob, never a
        hyperparameter (those come through `hparams` only, the values the guardrails bounded)."""
        refuse_hparam_overrides(overrides)
        return cls(**{**hparams.model_dump(), **overrides})


class TrainResult(BaseModel):
    steps: int = Field(description="optimizer steps done in total (including before a resume)")
    planned_steps: int
    epochs: float = Field(description="passes over the data actually done")
    final_loss: float = Field(description="mean loss of the last (up to) 10 optimizer steps")
    loss_history: list[float] = Field(description="loss of every optimizer step")
    wall_s: float = Field(description="wall time of this call (not of earlier interrupted calls)")
    tokens_per_s: float = Field(description="non-pad tokens through the model per second, this call")
    peak_rss_mb: float = Field(description="peak resident memory of the process")
    adapter_dir: str
    data_hash: str
    resumed_from_step: int = 0
    stopped_by_time_budget: bool = False


class EncodedRow(BaseModel):
    ids: list[int]
    weights: list[float] = Field(description="per answer token loss weight; len = answer length")


def encode_rows(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[TrainingRow], config: TrainConfig
) -> list[EncodedRow]:
    """Prompt + answer token ids per row, and a loss weight per answer token."""
    tokens = SkeletonTokens(tokenizer)
    digits = set(tokens.digits)
    encoded = []
    for index, row in enumerate(rows):
        answer = tokens.completion_ids(row.target.as_list())
        ids = prompt_ids(tokenizer, row.request_text) + answer
        if len(ids) > config.max_length:
            raise ValueError(
                f"training row {index} is {len(ids)} tokens, over max_length {config.max_length}: "
                f"{row.request_text[:60]!r}..."
            )
        weights = [config.value_token_weight if t in digits else config.format_token_weight for t in answer]
        encoded.append(EncodedRow(ids=ids, weights=weights))
    return encoded


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices per micro-batch for one epoch: shuffled, length-bucketed, a pure function of its inputs."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * LENGTH_BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), chunk):
        bucket = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle.tolist()]


def micro_batch_plan(lengths: Sequence[int], config: TrainConfig) -> list[list[int]]:
    """All micro-batches of the run, `epochs` (fractional) passes long, cut to whole optimizer steps."""
    per_epoch = math.ceil(len(lengths) / config.batch_size)
    total = max(config.grad_accum, round(config.epochs * per_epoch) // config.grad_accum * config.grad_accum)
    plan: list[list[int]] = []
    epoch = 0
    while len(plan) < total:
        plan += epoch_batches(lengths, config.batch_size, config.seed, epoch)
        epoch += 1
    return plan[:total]


def collate(batch: Sequence[EncodedRow], pad_id: int) -> dict[str, torch.Tensor | int]:
    """Left padded ids, mask, position ids; labels and weights for the last `answer_len` positions."""
    width = max(len(r.ids) for r in batch)
    answer_len = max(len(r.weights) for r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    weights = torch.zeros((len(batch), answer_len), dtype=torch.float32)
    for i, row in enumerate(batch):
        ids[i, width - len(row.ids) :] = torch.tensor(row.ids)
        mask[i, width - len(row.ids) :] = 1
        weights[i, answer_len - len(row.weights) :] = torch.tensor(row.weights)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": positions,
        "labels": ids[:, width - answer_len :],
        "weights": weights,
        "answer_len": answer_len,
    }


def batch_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Weighted cross-entropy on the answer tokens; only answer_len + 1 positions hit the vocabulary."""
    answer_len = batch["answer_len"]
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
        logits_to_keep=answer_len + 1,
    )
    logits = out.logits[:, :-1].float()  # position t predicts token t + 1
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), reduction="none"
    ).view_as(batch["weights"])
    return (per_token * batch["weights"]).sum() / batch["weights"].sum().clamp(min=1e-8)


def _config_fingerprint(config: TrainConfig, base_spec: str, rows_hash: str) -> dict:
    return {"config": config.model_dump(), "base_model": base_spec, "data_hash": rows_hash}


def _latest_checkpoint(output_dir: Path) -> Path | None:
    found = sorted(
        (p for p in (output_dir / CHECKPOINTS).glob("step-*") if (p / "state.json").is_file()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return found[-1] if found else None


def _save_checkpoint(output_dir: Path, model, optimizer, scheduler, state: dict) -> None:
    """Adapter, optimizer, scheduler, RNG and state: a temp folder renamed into place; older ones removed."""
    root = output_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        model.save_pretrained(staging)
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, staging / "rng.pt")
        (staging / "state.json").write_text(json.dumps(state))
        target = root / f"step-{state['step']}"
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in root.glob("step-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def _restore_checkpoint(checkpoint: Path, model, optimizer, scheduler) -> dict:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    rng = torch.load(checkpoint / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    return json.loads((checkpoint / "state.json").read_text())


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train_lora(
    config: TrainConfig,
    rows: list[TrainingRow],
    base_spec: str | Path,
    output_dir: Path,
    *,
    on_step: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on `rows`; the adapter and `training_record.json` land in `output_dir`.

    Re-running on the same `output_dir` resumes from its last checkpoint, or returns the finished
    result; a checkpoint or record made with other data, base model or config is refused.
    `on_step` gets {"step", "loss", "lr", "epoch"} after every optimizer step (an exception from it
    stops training; the last checkpoint stays).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    if not rows:
        raise ValueError("no training rows")
    started = time.perf_counter()
    output_dir = Path(output_dir)
    rows_hash = data_hash(rows)
    fingerprint = _config_fingerprint(config, str(base_spec), rows_hash)
    record_path = output_dir / RECORD_NAME
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if {k: record.get(k) for k in fingerprint} != fingerprint:
            raise ValueError(f"{output_dir} holds a finished run with other data/config: use a fresh folder")
        return TrainResult.model_validate(record["result"])
    checkpoint = _latest_checkpoint(output_dir)

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model, tokenizer = load_base(base_spec)
    encoded = encode_rows(tokenizer, rows, config)
    plan = micro_batch_plan([len(r.ids) for r in encoded], config)
    planned_steps = len(plan) // config.grad_accum
    per_epoch = math.ceil(len(encoded) / config.batch_size)

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        layers_to_transform=config.layers_to_transform,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, round(config.warmup_ratio * planned_steps), planned_steps
    )

    step, losses, resumed_from = 0, [], 0
    if checkpoint is not None:
        state = _restore_checkpoint(checkpoint, model, optimizer, scheduler)
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"{checkpoint} was made with other data/config: use a fresh output folder")
        step, losses, resumed_from = state["step"], state["losses"], state["step"]

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens_seen = 0
    stopped_by_budget = False
    bar = Progress(planned_steps, "train LoRA", initial=step, enabled=progress)
    try:
        while step < planned_steps:
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in plan[step * config.grad_accum : (step + 1) * config.grad_accum]:
                batch = collate([encoded[i] for i in micro], pad_id)
                loss = batch_loss(model, batch) / config.grad_accum
                loss.backward()
                step_loss += loss.item()
                tokens_seen += int(batch["attention_mask"].sum())
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1
            losses.append(step_loss)
            epoch = step * config.grad_accum / per_epoch
            bar.update(1, loss=step_loss, lr=lr)
            over_budget = (
                config.time_budget_s is not None and time.perf_counter() - started > config.time_budget_s
            )
            if step % config.checkpoint_every_steps == 0 or step == planned_steps or over_budget:
                state = {"step": step, "losses": losses, "fingerprint": fingerprint}
                _save_checkpoint(output_dir, model, optimizer, scheduler, state)
            if on_step is not None:
                on_step({"step": step, "loss": step_loss, "lr": lr, "epoch": epoch})
            if over_budget and step < planned_steps:
                stopped_by_budget = True
                break
    finally:
        bar.close()

    model.save_pretrained(output_dir)
    record_base_spec(output_dir, base_spec)
    wall = time.perf_counter() - started
    result = TrainResult(
        steps=step,
        planned_steps=planned_steps,
        epochs=step * config.grad_accum / per_epoch,
        final_loss=sum(losses[-10:]) / len(losses[-10:]),
        loss_history=losses,
        wall_s=wall,
        tokens_per_s=tokens_seen / wall,
        peak_rss_mb=_peak_rss_mb(),
        adapter_dir=str(output_dir),
        data_hash=rows_hash,
        resumed_from_step=resumed_from,
        stopped_by_time_budget=stopped_by_budget,
    )
    atomic_write_json(record_path, {**fingerprint, "result": result.model_dump()})
    shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
    return result
