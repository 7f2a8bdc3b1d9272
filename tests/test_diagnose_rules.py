"""The diagnose stage's rules, one at a time: which out-of-fold rows count as the champion's failures, the
ratio to the constant, where the data is learnable, the learnability cache, and a diagnosis without a
champion. Fast: the registry, the champion's out-of-fold record and the learnability are written here."""

from __future__ import annotations

import json

import pytest
from test_gate import exact

from loop.config import LoopConfig
from loop.registry import promote, register_candidate
from loop.stages.diagnose import DIAGNOSIS_FILE, TOP_FAILURES, cached_learnability, diagnose
from loop.stages.inputs import dataset
from tools.core.atomic import atomic_write_json
from tools.core.contracts import Diagnosis, LearnabilitySlice
from tools.core.paths import cycle_dir, loop_dir
from tools.data.dataset import load_dataset, text_key, write_jsonl
from tools.evaluation.baselines import learnability
from tools.student.folds import OOF_FILE, OutOfFold

COMMON = {"base_model": "bundled", "decoder": "regression", "recipe": None, "eval_run_id": None}
TARGET = [5] * 6


def _per_dim(errors: list[float]):
    return exact([errors] * 120)


def _oof(offsets: list[list[float]]) -> OutOfFold:
    """Row i predicted `offsets[i]` away from a target of 5 on each dim."""
    return OutOfFold(
        n_folds=5,
        keys=[text_key(f"row {i}") for i in range(len(offsets))],
        source_types=["request_text"] * len(offsets),
        targets=[TARGET for _ in offsets],
        predictions=[[5 + o for o in offset] for offset in offsets],
    )


# The 20 worst rows: energy off by exactly 2 (counts), brightness off by -3 (counts: the size of the miss),
# acousticness off by 1.9 (does not). The next 10, less bad, are off by 2.5 on nostalgia: outside the 20 worst.
WORST = [[2.0, 0.0, -3.0, 1.9, 0.0, 0.0]] * TOP_FAILURES
NEXT = [[0.0, 0.0, 0.0, 0.0, 0.0, 2.5]] * 10


def _slices() -> list[LearnabilitySlice]:
    def piece(source: str, dim: str, learnable: bool) -> LearnabilitySlice:
        return LearnabilitySlice(
            source_type=source, dim=dim, n_rows=30, constant_mae=1.0, model_mae=0.5, learnable=learnable
        )

    return [
        piece("request_text", "energy", True),
        piece("rule_prompt", "energy", False),
        piece("rule_prompt", "warmth", True),
    ]


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path


def _cache(config: LoopConfig):
    return loop_dir() / f"learnability_{dataset(config).name.replace('/', '_')}_seed{config.seed}.json"


@pytest.fixture
def champion(artifacts):
    """A constant with CV MAE 2 on every dim but 0 on nostalgia; a champion whose student folder holds only
    its out-of-fold record (`WORST` then `NEXT`), CV MAE 1 on every dim."""
    config = LoopConfig()
    atomic_write_json(_cache(config), [s.model_dump() for s in _slices()])
    register_candidate(0, "train-median", None, _per_dim([2.0] * 6), cv=_per_dim([2.0] * 5 + [0.0]), **COMMON)
    student = artifacts / "student"
    atomic_write_json(student / OOF_FILE, _oof(NEXT + WORST))  # stored best first: the stage sorts
    register_candidate(1, "champ", student, _per_dim([1.0] * 6), cv=_per_dim([1.0] * 6), **COMMON)
    promote(1, "champ")
    return config


def _dims(diagnosis: Diagnosis) -> dict:
    return {w.dim: w for w in diagnosis.weak_dims}


def test_a_failure_is_a_miss_of_2_or_more_either_way_among_the_champions_20_worst_out_of_fold_rows(champion):
    dims = _dims(diagnose(2, champion))
    assert {d: w.failures_off_by_2_plus for d, w in dims.items()} == {
        "energy": TOP_FAILURES,
        "warmth": 0,
        "brightness": TOP_FAILURES,
        "acousticness": 0,
        "complexity": 0,
        "nostalgia": 0,
    }


def test_the_ratio_is_the_champions_cv_mae_over_the_constants_and_none_where_the_constant_is_exact(champion):
    dims = _dims(diagnose(2, champion))
    assert dims["energy"].champion_cv_mae == pytest.approx(1.0)
    assert dims["energy"].constant_cv_mae == pytest.approx(2.0)
    assert dims["energy"].ratio_to_constant == pytest.approx(0.5)
    assert dims["nostalgia"].constant_cv_mae == 0.0 and dims["nostalgia"].ratio_to_constant is None
    # With no ratio the ranking falls back on the champion's own CV MAE (1.0 > 0.5): nostalgia first.
    assert diagnose(2, champion).ranking[0] == "nostalgia"


def test_a_dim_is_learnable_on_the_source_types_where_a_model_beats_the_constant_on_that_dim(champion):
    dims = _dims(diagnose(2, champion))
    assert dims["energy"].learnable_slices == ["request_text"]
    assert dims["warmth"].learnable_slices == ["rule_prompt"]
    assert dims["nostalgia"].learnable_slices == []
    assert diagnose(2, champion).learnability == _slices()


def test_the_diagnosis_is_written_where_the_log_stage_reads_it(champion):
    written = diagnose(3, champion)
    assert Diagnosis.model_validate_json((cycle_dir(3) / DIAGNOSIS_FILE).read_text()) == written
    assert written.cycle == 3 and written.evidence == "out-of-fold errors on the training split"


def test_without_a_champion_the_diagnosis_says_it_has_no_cv_and_ranks_nothing_as_weaker(artifacts):
    config = LoopConfig()
    atomic_write_json(_cache(config), [])
    diagnosis = diagnose(0, config)
    assert diagnosis.evidence == "no CV for the champion (zero-shot base model)"
    assert all(
        (w.champion_cv_mae, w.constant_cv_mae, w.ratio_to_constant, w.failures_off_by_2_plus)
        == (None, None, None, 0)
        for w in diagnosis.weak_dims
    )
    assert diagnosis.ranking == ["energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia"]


def test_learnability_is_read_from_its_cache_per_dataset_and_seed(artifacts):
    config = LoopConfig()
    atomic_write_json(_cache(config), [s.model_dump() for s in _slices()])
    assert cached_learnability(config) == _slices()
    assert cached_learnability(config, keep=False) == _slices()
    other_seed = LoopConfig(seed=1)
    assert _cache(other_seed).name == _cache(config).name.replace("seed0", "seed1")


def _small_dataset(tmp_path) -> str:
    shipped = load_dataset("shipped")
    folder = tmp_path / "small"
    write_jsonl(folder / "train.jsonl", shipped.train[:60])
    write_jsonl(folder / "valid.jsonl", shipped.valid[:5])
    return str(folder)


def test_a_read_only_caller_computes_learnability_without_writing_the_cache_and_the_stage_writes_it(
    artifacts,
):
    config = LoopConfig(data=_small_dataset(artifacts), seed=1)
    computed = cached_learnability(config, keep=False)
    assert not _cache(config).exists()
    train = dataset(config).train
    assert computed == learnability(train, seed=1) != learnability(train, seed=0)  # on the config's seed
    assert cached_learnability(config) == computed
    assert [LearnabilitySlice.model_validate(s) for s in json.loads(_cache(config).read_text())] == computed
