"""The regression student on a tiny random Llama with the real tokenizer (seconds, no real base weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tools.core.contracts import HParams
from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.student.base_model import build_tiny_model
from tools.student.regression import (
    HEAD_FILE,
    SPEC_FILE,
    RegressionConfig,
    RegressionStudent,
    StudentSpec,
    format_input,
    learn_common_lines,
)
from tools.student.regression_training import CHECKPOINT_FILE, train_regression

BOILERPLATE = "Make game music.\nSelected parts:"


def _row(text: str, values: list[int], source: SourceType = SourceType.rule_prompt) -> TrainingRow:
    return TrainingRow(request_text=text, source_type=source, target=ParamVector.from_list(values))


def _rows() -> list[TrainingRow]:
    """Rule-like rows whose targets are additive in two part words, under a shared boilerplate."""
    styles = {"jazz": 2, "folk": 0, "edm": 4, "pop": 3}
    moods = {"rain": -1, "sun": 2, "night": 0}
    rows = []
    for style, s in styles.items():
        for mood, m in moods.items():
            energy = 2 + s + m
            rows.append(
                _row(f"{BOILERPLATE}\n- style: {style}\n- mood: {mood}", [energy, 8, 5 + m, 6 - s // 2, 4, 8])
            )
    return rows


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_base")))


def _config(**overrides) -> RegressionConfig:
    values = dict(
        layers_kept=2,
        lora_layers=1,
        lora_r=4,
        lora_alpha=8,
        learning_rate=5e-3,
        head_learning_rate=5e-2,
        epochs=8,
        batch_size=4,
        checkpoint_every_steps=2,
        drop_common_lines=0.5,
    )
    values.update(overrides)
    return RegressionConfig(**values)


def _mae(predictions, rows) -> float:
    pred = np.array([p.values for p in predictions])
    return float(np.abs(pred - np.array([r.target.as_list() for r in rows])).mean())


def test_training_lowers_training_error_below_the_constant_answer(tiny_base, tmp_path):
    rows = _rows()
    result = train_regression(_config(), rows, tiny_base, tmp_path / "student", progress=False)
    student = RegressionStudent.load(tiny_base, tmp_path / "student")

    targets = np.array([r.target.as_list() for r in rows])
    constant_mae = float(np.abs(targets - targets.mean(0)).mean())
    assert _mae(student.predict_batch([r.request_text for r in rows]), rows) < 0.8 * constant_mae
    assert result.steps == result.total_steps == 8 * 3
    assert result.resumed_from_step is None and not result.stopped_by_budget
    assert result.peak_rss_mb > 0 and result.final_loss > 0
    assert json.loads((tmp_path / "student" / "training_record.json").read_text())["steps"] == 24
    assert not (tmp_path / "student" / CHECKPOINT_FILE).exists()


def test_predictions_are_clipped_to_the_scale_and_served_as_strict_json(tiny_base, tmp_path):
    rows = _rows()
    train_regression(_config(epochs=1), rows, tiny_base, tmp_path / "s", progress=False)
    student = RegressionStudent.load(tiny_base, tmp_path / "s")

    predictions = student.predict_batch([r.request_text for r in rows] + ["anything else"], batch_size=5)
    predictions.append(student.predict_one("a single request"))
    for p in predictions:
        assert p.json_valid and p.served_by == "model" and p.latency_ms > 0
        assert len(p.values) == 6 and all(0.0 <= v <= 10.0 for v in p.values)
        served = ParamVector.model_validate_json(p.raw_output).as_list()
        assert served == [int(np.clip(np.floor(v + 0.5), 0, 10)) for v in p.values]
    assert student.decoder == "regression" and student.name == "regression:s"


def test_a_run_killed_mid_training_resumes_to_the_same_weights_as_an_uninterrupted_run(tiny_base, tmp_path):
    rows = _rows()
    config = _config(epochs=2)
    train_regression(config, rows, tiny_base, tmp_path / "whole", progress=False)

    def kill_at_step_5(step: int, loss: float) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_regression(config, rows, tiny_base, tmp_path / "killed", on_step=kill_at_step_5, progress=False)
    assert (tmp_path / "killed" / CHECKPOINT_FILE).is_file()
    resumed = train_regression(config, rows, tiny_base, tmp_path / "killed", progress=False)

    assert resumed.resumed_from_step == 4
    for name in (HEAD_FILE, "adapter/adapter_model.safetensors"):
        whole, again = load_file(tmp_path / "whole" / name), load_file(tmp_path / "killed" / name)
        assert whole.keys() == again.keys()
        for key in whole:
            torch.testing.assert_close(whole[key], again[key], rtol=0, atol=1e-6)


def test_a_checkpoint_from_another_config_is_not_resumed(tiny_base, tmp_path):
    rows = _rows()

    def kill_at_step_3(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_regression(_config(), rows, tiny_base, tmp_path / "s", on_step=kill_at_step_3, progress=False)
    result = train_regression(_config(lora_r=2, epochs=1), rows, tiny_base, tmp_path / "s", progress=False)
    assert result.resumed_from_step is None


def test_saved_student_reloads_to_identical_predictions_whatever_the_batching(tiny_base, tmp_path):
    rows = _rows()
    train_regression(_config(epochs=2), rows, tiny_base, tmp_path / "s", progress=False)
    texts = [r.request_text for r in rows]

    first = RegressionStudent.load(tiny_base, tmp_path / "s").predict_batch(texts, batch_size=16)
    reloaded = RegressionStudent.load(None, tmp_path / "s")
    second = reloaded.predict_batch(texts, batch_size=16)
    one_by_one = [reloaded.predict_one(t) for t in texts]

    assert [p.values for p in first] == [p.values for p in second]
    np.testing.assert_allclose([p.values for p in first], [p.values for p in one_by_one], atol=1e-4)


def test_ordinal_head_with_median_decoding_serves_integers(tiny_base, tmp_path):
    rows = _rows()
    config = _config(head="ordinal", ordinal_decode="median", epochs=4)
    train_regression(config, rows, tiny_base, tmp_path / "s", progress=False)
    predictions = RegressionStudent.load(tiny_base, tmp_path / "s").predict_batch(
        [r.request_text for r in rows]
    )
    for p in predictions:
        assert all(float(v).is_integer() and 0 <= v <= 10 for v in p.values)


def test_frozen_trunk_trains_only_the_head_and_int8_serving_stays_close(tiny_base, tmp_path):
    rows = _rows()
    train_regression(_config(lora_layers=0, epochs=2), rows, tiny_base, tmp_path / "s", progress=False)
    assert not (tmp_path / "s" / "adapter").exists()
    texts = [r.request_text for r in rows]
    fp32 = RegressionStudent.load(tiny_base, tmp_path / "s").predict_batch(texts)

    spec = StudentSpec.model_validate_json((tmp_path / "s" / SPEC_FILE).read_text())
    spec.config.quantize_int8 = True
    (tmp_path / "s" / SPEC_FILE).write_text(spec.model_dump_json())
    int8 = RegressionStudent.load(tiny_base, tmp_path / "s").predict_batch(texts)
    assert np.abs(np.array([p.values for p in fp32]) - np.array([p.values for p in int8])).max() < 0.5


def test_time_budget_stops_training_and_says_so(tiny_base, tmp_path):
    result = train_regression(_config(time_budget_s=1e-6), _rows(), tiny_base, tmp_path / "s", progress=False)
    assert result.stopped_by_budget and result.steps == 0
    assert RegressionStudent.load(tiny_base, tmp_path / "s").predict_one("x").json_valid


def test_boilerplate_lines_are_learned_from_training_rows_and_dropped():
    texts = [r.request_text for r in _rows()]
    common = learn_common_lines(texts, 0.5)
    assert common == sorted(BOILERPLATE.split("\n"))
    assert format_input(texts[0], common, prefix="> ") == "> - style: jazz\n- mood: rain"
    assert format_input("Make game music.", common) == "Make game music."
    assert learn_common_lines(texts, None) == []


def test_from_hparams_maps_the_planner_knobs_and_applies_overrides():
    hparams = HParams(
        learning_rate=1e-3, lora_r=8, lora_alpha=16, lora_dropout=0.1, epochs=2, batch_size=8, grad_accum=2
    )
    config = RegressionConfig.from_hparams(hparams, layers_kept=10, head="ordinal")
    assert (config.learning_rate, config.lora_r, config.lora_alpha, config.lora_dropout) == (1e-3, 8, 16, 0.1)
    assert (config.epochs, config.batch_size, config.layers_kept, config.head) == (2, 16, 10, "ordinal")
