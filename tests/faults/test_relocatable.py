"""Issue 13.7: artifacts are relocatable. The converted base model is cached once per machine (not under
the artifacts folder), adapters record the base model as the user named it (not this machine's path),
and file names built from predictor names hold no colons."""

from __future__ import annotations

import json

from tools.core.paths import artifacts_dir, cache_dir, file_stem
from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.student.regression import RegressionConfig, RegressionStudent
from tools.student.regression_training import train_regression


def test_the_cache_is_per_machine_not_per_artifacts_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("KOTONE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "one"))
    first = cache_dir()
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "two"))
    assert cache_dir() == first == tmp_path / "home" / ".cache" / "kotone-loop"
    assert not first.is_relative_to(artifacts_dir())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "kotone-loop"
    monkeypatch.setenv("KOTONE_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_an_adapter_records_the_base_model_as_given_not_this_machines_path(
    tiny_base_model, tmp_path, monkeypatch
):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_base_model)
    monkeypatch.chdir(tmp_path)
    rows = [
        TrainingRow(
            request_text=f"a quiet song number {i}",
            source_type=SourceType.request_text,
            target=ParamVector.from_list([i % 11, 3, 5, 7, 2, 9]),
        )
        for i in range(8)
    ]
    config = RegressionConfig(layers_kept=2, lora_layers=1, epochs=1, batch_size=4)
    train_regression(config, rows, "models/tiny", tmp_path / "student", progress=False)
    adapter = json.loads((tmp_path / "student" / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "models/tiny"
    # The whole student moves with its folder: loaded from elsewhere, it still serves.
    moved = tmp_path / "elsewhere" / "student"
    moved.parent.mkdir()
    (tmp_path / "student").rename(moved)
    assert RegressionStudent.load("models/tiny", moved).predict_one("anything").json_valid


def test_file_names_from_predictor_names_hold_no_colons_or_slashes():
    assert (
        file_stem("eval_regression:cycle_1/student_regression")
        == "eval_regression-cycle_1-student_regression"
    )
    assert file_stem("eval_stack:cycle_2/lm_free") == "eval_stack-cycle_2-lm_free"
    assert ":" not in file_stem("C:\\\\x") and file_stem("::") == "unnamed"
