"""LoRA training on the tiny random model: config, loss, batch plan, checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tools.core.contracts import HParams
from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.student.base_model import load_tokenizer
from tools.student.decoding import SkeletonTokens
from tools.student.generative import GenerativeStudent
from tools.student.generative_training import (
    RECORD_NAME,
    TrainConfig,
    encode_rows,
    micro_batch_plan,
    train_lora,
)

ROWS = [
    TrainingRow(
        request_text=text,
        source_type=SourceType.request_text,
        target=ParamVector.from_list(values),
    )
    for text, values in [
        ("rainy piano", [2, 7, 3, 9, 3, 8]),
        ("festival brass", [9, 6, 8, 3, 6, 4]),
        ("8-bit dungeon", [6, 3, 5, 1, 7, 10]),
        ("sunny ukulele", [6, 8, 10, 9, 2, 5]),
    ]
]

FAST = dict(batch_size=2, learning_rate=3e-2, lora_r=8, lora_alpha=16, seed=3)


class Interrupted(RuntimeError):
    pass


def test_from_hparams_maps_the_planner_knobs_and_takes_overrides() -> None:
    hparams = HParams(learning_rate=1e-3, lora_r=32, lora_alpha=64, epochs=2.0, batch_size=4, grad_accum=2)
    config = TrainConfig.from_hparams(hparams, layers_to_transform=[28, 29], seed=7)
    assert (config.learning_rate, config.lora_r, config.lora_alpha) == (1e-3, 32, 64)
    assert (config.epochs, config.batch_size, config.grad_accum) == (2.0, 4, 2)
    assert config.layers_to_transform == [28, 29] and config.seed == 7
    assert config.lora_dropout == hparams.lora_dropout


def test_config_refuses_unknown_or_invalid_knobs() -> None:
    with pytest.raises(ValueError, match="extra"):
        TrainConfig(learning_rat=1e-3)
    with pytest.raises(ValueError, match="greater than 0"):
        TrainConfig(learning_rate=0)


def test_loss_covers_the_answer_only_with_value_tokens_weighted(tiny_base_model: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_base_model))
    config = TrainConfig(value_token_weight=3.0, format_token_weight=0.5)
    [row] = encode_rows(tokenizer, ROWS[2:3], config)
    answer = SkeletonTokens(tokenizer).completion_ids(ROWS[2].target.as_list())
    assert row.ids[-len(answer) :] == answer and len(row.weights) == len(answer)
    digits = set(SkeletonTokens(tokenizer).digits)
    assert [w for t, w in zip(answer, row.weights, strict=True) if t in digits] == [3.0] * 7  # "10": 2 tokens
    assert {w for t, w in zip(answer, row.weights, strict=True) if t not in digits} == {0.5}


def test_row_longer_than_max_length_is_an_error_naming_the_row(tiny_base_model: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_base_model))
    long_row = ROWS[0].model_copy(update={"request_text": "very long " * 200})
    with pytest.raises(ValueError, match="training row 1 .* over max_length 384"):
        encode_rows(tokenizer, [ROWS[0], long_row], TrainConfig())


def test_batch_plan_covers_every_row_each_epoch_and_is_reproducible() -> None:
    lengths = [10, 50, 12, 48, 30, 31, 5, 70, 22]
    config = TrainConfig(batch_size=2, epochs=2.0, seed=1)
    plan = micro_batch_plan(lengths, config)
    assert len(plan) == 10  # ceil(9 / 2) = 5 batches per epoch
    assert sorted(i for batch in plan[:5] for i in batch) == list(range(9))
    assert sorted(i for batch in plan[5:] for i in batch) == list(range(9))
    assert plan == micro_batch_plan(lengths, config)
    assert plan != micro_batch_plan(lengths, config.model_copy(update={"seed": 2}))


def test_fractional_epochs_cut_the_plan_to_whole_optimizer_steps() -> None:
    plan = micro_batch_plan([10] * 16, TrainConfig(batch_size=2, epochs=0.5, grad_accum=3))
    assert len(plan) == 3  # 8 batches per epoch, half is 4, rounded down to a multiple of grad_accum


def test_training_reduces_the_loss_on_a_small_repeated_dataset(tiny_base_model: Path, tmp_path: Path) -> None:
    seen: list[dict] = []
    result = train_lora(
        TrainConfig(**FAST, epochs=6.0),
        ROWS,
        str(tiny_base_model),
        tmp_path / "run",
        on_step=seen.append,
        progress=False,
    )
    assert result.steps == result.planned_steps == 12 and result.epochs == 6.0
    assert [s["step"] for s in seen] == list(range(1, 13))
    assert set(seen[0]) == {"step", "loss", "lr", "epoch"}
    first, last = result.loss_history[:2], result.loss_history[-2:]
    assert sum(last) / 2 < sum(first) / 2 - 1.0
    assert result.tokens_per_s > 0 and result.peak_rss_mb > 0 and result.wall_s > 0


def test_finished_run_leaves_adapter_and_record_and_is_not_retrained(
    tiny_base_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = TrainConfig(**FAST, epochs=1.0)
    result = train_lora(config, ROWS, str(tiny_base_model), out, progress=False)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "checkpoints").exists()
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["data_hash"] == result.data_hash and record["base_model"] == str(tiny_base_model)
    assert record["config"] == config.model_dump() and record["result"]["steps"] == 2

    again = train_lora(config, ROWS, str(tiny_base_model), out, on_step=lambda s: pytest.fail("retrained"))
    assert again == result
    with pytest.raises(ValueError, match="other data/config"):
        train_lora(config, ROWS[:3], str(tiny_base_model), out, progress=False)


def test_resume_after_a_kill_ends_with_the_same_adapter_as_an_uninterrupted_run(
    tiny_base_model: Path, tmp_path: Path
) -> None:
    config = TrainConfig(**FAST, epochs=3.0, checkpoint_every_steps=2, lora_dropout=0.1)
    straight = train_lora(config, ROWS, str(tiny_base_model), tmp_path / "straight", progress=False)

    def kill_at_step_5(info: dict) -> None:
        if info["step"] == 5:
            raise Interrupted

    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        train_lora(config, ROWS, str(tiny_base_model), interrupted, on_step=kill_at_step_5, progress=False)
    assert not (interrupted / RECORD_NAME).exists()
    assert [p.name for p in (interrupted / "checkpoints").iterdir()] == ["step-4"]

    resumed = train_lora(config, ROWS, str(tiny_base_model), interrupted, progress=False)
    assert resumed.resumed_from_step == 4 and resumed.steps == straight.steps == 6
    assert resumed.loss_history == pytest.approx(straight.loss_history, abs=1e-6)
    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(interrupted / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_time_budget_stops_early_and_still_saves_the_adapter(tiny_base_model: Path, tmp_path: Path) -> None:
    config = TrainConfig(**FAST, epochs=50.0, time_budget_s=0.01)
    result = train_lora(config, ROWS, str(tiny_base_model), tmp_path / "run", progress=False)
    assert result.stopped_by_time_budget and result.steps == 1 < result.planned_steps
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


def test_upper_layers_only_gets_lora_and_the_student_serves_the_trained_adapter(
    tiny_base_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train_lora(TrainConfig(**FAST, epochs=1.0, layers_to_transform=[1]), ROWS, str(tiny_base_model), out)
    keys = load_file(out / "adapter_model.safetensors").keys()
    assert keys and all(".layers.1." in k for k in keys)
    student = GenerativeStudent.load(str(tiny_base_model), adapter_dir=out)
    assert student.name == f"{tiny_base_model.name}+run"
    prediction = student.predict_one("rainy piano")
    assert prediction.json_valid and prediction.served_by == "model"
