"""The diagnose stage ranks weak dims from the champion's out-of-fold errors on the TRAINING split against
the constant's: the validation figures are the gate's, and a diagnosis that read them would be tuning on
the gate's rows."""

from __future__ import annotations

import pytest
from test_gate import exact

from loop.config import LoopConfig
from loop.registry import promote, register_candidate
from loop.stages.diagnose import diagnose, read_diagnosis
from loop.stages.inputs import dataset
from tools.core.atomic import atomic_write_json
from tools.core.contracts import Diagnosis
from tools.core.paths import loop_dir
from tools.core.schema import DIMS


def _per_dim(errors: list[float]):
    """A report whose per-dim MAE is `errors` (every row off by the same amount on each dim)."""
    return exact([errors] * 120)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    config = LoopConfig()
    atomic_write_json(loop_dir() / f"learnability_{dataset(config).name.replace('/', '_')}_seed0.json", [])
    flat = _per_dim([1.0] * 6)
    common = {"base_model": "bundled", "decoder": "regression", "recipe": None, "eval_run_id": None}
    register_candidate(0, "train-median", None, flat, cv=flat, **common)
    # On valid energy looks worst; out of fold on train it is nostalgia, then warmth.
    valid = _per_dim([2.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    cv = _per_dim([0.5, 0.9, 0.5, 0.5, 0.5, 1.0])
    register_candidate(1, "champ", None, valid, cv=cv, **common)
    promote(1, "champ")
    return config


def test_the_ranking_comes_from_out_of_fold_errors_on_train_never_from_valid(registry):
    diagnosis = diagnose(2, registry)
    assert diagnosis.ranking[:2] == ["nostalgia", "warmth"]
    assert diagnosis.ranking[-1] != "nostalgia" and diagnosis.ranking[0] != "energy"
    top = diagnosis.weak_dims[0]
    assert top.ratio_to_constant == pytest.approx(1.0) and top.constant_cv_mae == pytest.approx(1.0)
    assert diagnosis.evidence == "out-of-fold errors on the training split"
    assert sorted(diagnosis.ranking) == sorted(DIMS)


def test_the_diagnosis_the_planner_reads_is_the_one_the_stage_wrote(registry):
    written = diagnose(2, registry)
    assert read_diagnosis(2) == written
    assert Diagnosis.model_validate_json(written.model_dump_json()).ranking == written.ranking
