"""Training the regression student (the fast path: frozen lower layers cached once, LoRA on the top ones).

The frozen lower layers run once over every training row and their outputs are cached; each step then runs
only the LoRA layers on top, the final norm, the mean pool and the head. A checkpoint (trainable weights,
optimizer, schedule, RNG state) is written atomically every `checkpoint_every_steps`; a run restarted on the
same output folder with the same config and rows resumes from it and ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from tools.core.atomic import atomic_write_json
from tools.core.progress import Progress
from tools.core.schema import DIMS, SCALE_MIN, TrainingRow
from tools.data.dataset import data_hash
from tools.student.base_model import record_base_spec
from tools.student.regression import (
    ADAPTER_DIR,
    HEAD_FILE,
    N_LEVELS,
    RECORD_FILE,
    SPEC_FILE,
    RegressionConfig,
    StudentSpec,
    TargetScaling,
    build_head,
    format_input,
    init_head,
    learn_common_lines,
    mean_pool,
    run_layers,
    target_scaling,
    truncate_trunk,
)

CHECKPOINT_FILE = "checkpoint.pt"
# Knobs that change neither the optimisation nor its result: a checkpoint stays valid when they differ.
_NOT_IN_FINGERPRINT = {"checkpoint_every_steps", "time_budget_s", "quantize_int8"}

OnStep = Callable[[int, float], None]


class RegressionTrainResult(BaseModel):
    """What one training run did (also written to `training_record.json` in the student folder)."""

    student_type: str = "regression"
    output_dir: str
    base_spec: str
    data_hash: str
    n_rows: int
    steps: int
    total_steps: int
    epochs: float
    final_loss: float | None = Field(
        description="mean loss of the last epoch's steps; None when no step ran (not trained: the time "
        "budget was spent before the first step)"
    )
    wall_s: float
    cache_s: float
    peak_rss_mb: float
    resumed_from_step: int | None
    stopped_by_budget: bool
    config: RegressionConfig


def _fingerprint(config: RegressionConfig, base_spec: str, rows_hash: str) -> str:
    relevant = config.model_dump_json(exclude=_NOT_IN_FINGERPRINT)
    return hashlib.sha256(f"{relevant}|{base_spec}|{rows_hash}".encode()).hexdigest()[:16]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cache_lower_layers(trunk, tokenizer, texts: Sequence[str], n_frozen: int, max_length: int) -> list:
    """Per row, the (tokens, hidden) output of the embeddings + the first `n_frozen` layers."""
    import torch

    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    cached: list = [None] * len(texts)
    frozen = list(trunk.layers)[:n_frozen]
    with torch.no_grad():
        for start in range(0, len(order), 16):
            idx = order[start : start + 16]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for j, i in enumerate(idx):
                ids[j, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[j, : len(encoded[i])] = 1
            hidden = run_layers(trunk, trunk.embed_tokens(ids), mask, frozen)
            for j, i in enumerate(idx):
                cached[i] = hidden[j, : len(encoded[i])].clone()
    return cached


def _pad_batch(cached: list, idx: Sequence[int]):
    import torch

    width = max(cached[i].shape[0] for i in idx)
    hidden = torch.zeros((len(idx), width, cached[idx[0]].shape[1]))
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for j, i in enumerate(idx):
        hidden[j, : cached[i].shape[0]] = cached[i]
        mask[j, : cached[i].shape[0]] = 1
    return hidden, mask


def _pooled_states(inner, upper, cached: list):
    """Every training row's pooled state from the untrained student (LoRA starts as the identity)."""
    import torch

    pooled = []
    with torch.no_grad():
        for start in range(0, len(cached), 32):
            hidden, mask = _pad_batch(cached, range(start, min(start + 32, len(cached))))
            pooled.append(mean_pool(inner.norm(run_layers(inner, hidden, mask, upper)), mask))
    return torch.cat(pooled)


def _loss(outputs, targets, config: RegressionConfig, scaling: TargetScaling):
    import torch
    import torch.nn.functional as F

    if config.head == "linear":
        scaled = (targets - torch.tensor(scaling.mean)) / torch.tensor(scaling.std)
        if config.loss == "mse":
            return F.mse_loss(outputs, scaled)
        if config.loss == "huber":
            return F.huber_loss(outputs, scaled, delta=1.0)
        return F.l1_loss(outputs, scaled)
    levels = torch.arange(N_LEVELS, dtype=torch.float32) + SCALE_MIN
    soft = torch.exp(-0.5 * ((levels - targets.unsqueeze(-1)) / config.ordinal_sigma) ** 2)
    soft = soft / soft.sum(-1, keepdim=True)
    log_probs = outputs.view(-1, len(DIMS), N_LEVELS).log_softmax(-1)
    return -(soft * log_probs).sum(-1).mean()


def _batch_indices(step: int, n_rows: int, batch_size: int, seed: int) -> list[int]:
    """Row indices of optimizer step `step`: a fresh seeded shuffle per epoch (resume sees the same order)."""
    import torch

    steps_per_epoch = math.ceil(n_rows / batch_size)
    epoch, within = divmod(step, steps_per_epoch)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[within * batch_size : (within + 1) * batch_size].tolist()


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_student(output_dir: Path, trunk, head, spec: StudentSpec) -> None:
    from safetensors.torch import save_file

    if spec.config.lora_layers > 0:
        staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{ADAPTER_DIR}."))
        try:
            trunk.save_pretrained(staging)
            record_base_spec(staging, spec.base_spec)
            shutil.rmtree(output_dir / ADAPTER_DIR, ignore_errors=True)
            staging.rename(output_dir / ADAPTER_DIR)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=f".{HEAD_FILE}.", suffix=".tmp")
    os.close(fd)
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, tmp)
    os.replace(tmp, output_dir / HEAD_FILE)
    atomic_write_json(output_dir / SPEC_FILE, spec)


def train_regression(
    config: RegressionConfig,
    rows: list[TrainingRow],
    base_spec: str,
    output_dir: Path,
    *,
    on_step: OnStep | None = None,
    progress: bool = True,
) -> RegressionTrainResult:
    """Train a regression student on `rows` into `output_dir` (resuming from its checkpoint if one matches).

    `on_step(step, loss)` is called after every optimizer step (and after any checkpoint of that step).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_cosine_schedule_with_warmup

    from tools.student.base_model import load_base

    if not rows:
        raise ValueError("train_regression needs at least one training row")
    began = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows_hash = data_hash(rows)
    fingerprint = _fingerprint(config, base_spec, rows_hash)

    model, tokenizer = load_base(base_spec)
    trunk, n_base_layers = truncate_trunk(model, config.layers_kept)
    n_kept = len(trunk.layers)
    if config.lora_layers > n_kept:
        raise ValueError(f"lora_layers={config.lora_layers} exceeds the {n_kept} kept layers")
    n_frozen = n_kept - config.lora_layers
    common_lines = learn_common_lines([r.request_text for r in rows], config.drop_common_lines)
    scaling = target_scaling(rows, config.standardize_targets and config.head == "linear")
    spec = StudentSpec(
        base_spec=base_spec,
        n_base_layers=n_base_layers,
        layers_kept=n_kept,
        config=config,
        common_lines=common_lines,
        scaling=scaling,
    )

    for p in trunk.parameters():
        p.requires_grad_(False)
    texts = [format_input(r.request_text, common_lines, config.prompt_prefix) for r in rows]
    cache_began = time.perf_counter()
    cached = _cache_lower_layers(trunk, tokenizer, texts, n_frozen, config.max_length)
    cache_s = time.perf_counter() - cache_began
    targets = torch.tensor([r.target.as_list() for r in rows], dtype=torch.float32)

    torch.manual_seed(config.seed)
    if config.lora_layers > 0:
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_targets,
            layers_to_transform=list(range(n_frozen, n_kept)),
            layers_pattern="layers",
        )
        trunk = get_peft_model(trunk, lora)
    inner = trunk.get_base_model() if config.lora_layers > 0 else trunk
    upper = list(inner.layers)[n_frozen:]
    head = build_head(inner.config.hidden_size, config)
    init_head(head, config, rows, scaling, _pooled_states(inner, upper, cached))

    lora_params = [p for p in trunk.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": config.learning_rate},
            {"params": list(head.parameters()), "lr": config.head_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, int(config.warmup_fraction * total_steps), total_steps
    )

    checkpoint_path = output_dir / CHECKPOINT_FILE
    start_step, resumed_from, losses = 0, None, []
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, weights_only=False)
        if state["fingerprint"] == fingerprint:
            trunk.load_state_dict(state["trainable"], strict=False)
            head.load_state_dict(state["head"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            start_step = resumed_from = state["step"]
            losses = state["losses"]

    def checkpoint(step: int) -> None:
        trainable = {k: v for k, v in trunk.state_dict().items() if "lora_" in k}
        _save_checkpoint(
            checkpoint_path,
            {
                "fingerprint": fingerprint,
                "step": step,
                "trainable": trainable,
                "head": head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "losses": losses,
            },
        )

    for layer in upper:
        layer.train()
    head.train()
    stopped_by_budget = False
    bar = Progress(total_steps, "train regression", initial=start_step, enabled=progress)
    step = start_step
    for step in range(start_step, total_steps):
        if config.time_budget_s is not None and time.perf_counter() - began > config.time_budget_s:
            stopped_by_budget = True
            break
        idx = _batch_indices(step, len(rows), config.batch_size, config.seed)
        hidden, mask = _pad_batch(cached, idx)
        hidden = inner.norm(run_layers(inner, hidden, mask, upper))
        loss = _loss(head(mean_pool(hidden, mask)), targets[idx], config, scaling)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.update(1, loss=losses[-1], epoch=round((step + 1) / steps_per_epoch, 2))
        if (step + 1) % config.checkpoint_every_steps == 0 and step + 1 < total_steps:
            checkpoint(step + 1)
        if on_step is not None:
            on_step(step + 1, losses[-1])
    else:
        step = total_steps
    bar.close()

    for layer in upper:
        layer.eval()
    head.eval()
    _save_student(output_dir, trunk, head, spec)
    tail = losses[-steps_per_epoch:]
    result = RegressionTrainResult(
        output_dir=str(output_dir),
        base_spec=base_spec,
        data_hash=rows_hash,
        n_rows=len(rows),
        steps=step,
        total_steps=total_steps,
        epochs=step / steps_per_epoch,
        final_loss=sum(tail) / len(tail) if tail else None,
        wall_s=time.perf_counter() - began,
        cache_s=cache_s,
        peak_rss_mb=_peak_rss_mb(),
        resumed_from_step=resumed_from,
        stopped_by_budget=stopped_by_budget,
        config=config,
    )
    atomic_write_json(output_dir / RECORD_FILE, result)
    checkpoint_path.unlink(missing_ok=True)
    return result
