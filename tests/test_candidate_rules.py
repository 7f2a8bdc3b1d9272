"""The train and evaluate stages' rules: only a first draw is pruned against the champion, a candidate's
outcome is what its training decided, a recorded candidate is never trained again, and only trained
candidates are evaluated and registered. Fast: outcomes and records written here, no model trained."""

from __future__ import annotations

import pytest
from test_gate import ROWS, uniform

from loop.config import LoopConfig
from loop.gate import GateConfig
from loop.parallel import TaskFailure
from loop.registry import entry_dir, promote, register_candidate, registered
from loop.stages.candidate import (
    CONFIRM_DIR,
    CONFIRM_SEED_OFFSET,
    EVALUATION_FILE,
    STUDENT_DIR,
    TRAINING_FILE,
    CandidateEvaluation,
    TrainingOutcome,
    _pruner,
    _record,
    evaluate_candidates,
    read_evaluation,
    submission_order,
    train_specs,
    training_outcome,
    training_seed,
)
from loop.stages.inputs import candidate_dir
from tools.core.atomic import atomic_write_json
from tools.core.contracts import AugmentationSpec, CandidateSpec, CyclePlan, StudentRecipe
from tools.core.paths import cycle_dir
from tools.data.dataset import text_key, write_jsonl
from tools.evaluation.baselines import TextBaseline
from tools.student.ensemble import MemberRecord
from tools.student.folds import OOF_FILE, OutOfFold
from tools.student.recipes import RecipeResult

COMMON = {"base_model": "bundled", "decoder": "regression", "recipe": None, "eval_run_id": None}
# Off by 0.4 on every dim: raw error 0.4, rounded 0 (the two metrics disagree on it)
CHAMPION_OOF = OutOfFold(
    n_folds=3,
    keys=[text_key(r.request_text) for r in ROWS[:30]],
    source_types=["request_text"] * 30,
    targets=[r.target.as_list() for r in ROWS[:30]],
    predictions=[[v + 0.4 for v in r.target.as_list()] for r in ROWS[:30]],
)


def _spec(name: str, recipe: StudentRecipe | None = None) -> CandidateSpec:
    return CandidateSpec(
        name=name,
        reason="r",
        focus_dims=["energy"],
        augmentation=AugmentationSpec(teacher_pairs=0, replay_rows=0),
        student=recipe or StudentRecipe(family="stack", components=["train-median", "tfidf-ridge"]),
    )


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    """A champion (cycle 0): a constant, with its out-of-fold record; a dataset folder."""
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    student = tmp_path / "champion"
    TextBaseline("train-median").fit(ROWS[:30]).save(student)
    atomic_write_json(student / OOF_FILE, CHAMPION_OOF)
    register_candidate(0, "champ", student, uniform(1.0), **COMMON)
    promote(0, "champ")
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", ROWS[:30])
    write_jsonl(data / "valid.jsonl", ROWS[30:])
    return data


def test_a_first_draw_is_pruned_against_the_champion_in_the_gates_metric_and_settings(artifacts):
    gate = GateConfig(metric="vector_mae_rounded", prune_confidence=0.9, bootstrap_samples=300, seed=5)
    pruner = _pruner(LoopConfig(gate=gate), 0)
    assert pruner is not None
    assert pruner.champion_errors == CHAMPION_OOF.errors(True) and set(pruner.champion_errors.values()) == {
        0.0
    }
    assert (pruner.rounded, pruner.confidence, pruner.samples, pruner.seed) == (True, 0.9, 300, 5)
    raw = _pruner(LoopConfig(), 0)
    assert raw is not None and not raw.rounded
    assert raw.champion_errors == pytest.approx(CHAMPION_OOF.errors(False))


def test_a_confirmation_draw_is_never_pruned(artifacts):
    assert _pruner(LoopConfig(), CONFIRM_SEED_OFFSET) is None
    assert _pruner(LoopConfig(), 1) is None


def _result(**update) -> dict:
    result = RecipeResult(
        recipe=StudentRecipe(),
        student_dir="s",
        cv_mae=0.5,
        cv_mae_rounded=0.4,
        cv_rows=30,
        wall_s=1.0,
        peak_rss_mb=1.0,
    )
    return {"result": result.model_copy(update=update).model_dump(mode="json"), "steps": []}


def _member(steps: int) -> MemberRecord:
    return MemberRecord(
        fold=0,
        seed=0,
        steps=steps,
        final_loss=None,
        wall_s=0.0,
        stopped_by_budget=True,
        train_rows=1,
        held_out_rows=[],
        held_out_predictions=[],
    )


@pytest.mark.parametrize(
    ("update", "status", "note"),
    [
        ({}, "trained", ""),
        ({"pruned": "pruned after fold 1: worse"}, "pruned", "pruned after fold 1: worse"),
        (
            {"not_trained": True, "members": [_member(0)]},
            "not_trained",
            "the time budget ended before any training step",
        ),
    ],
)
def test_a_candidates_outcome_is_what_its_training_decided_and_is_written_where_resume_reads_it(
    artifacts, update, status, note
):
    spec = _spec("a")
    recorded = _record(1, spec, CONFIRM_DIR, _result(**update))
    assert (recorded.status, recorded.note) == (status, note)
    assert isinstance(recorded.wandb_run_id, str) and recorded.wandb_run_id  # its training run, tracked
    assert training_outcome(1, "a", CONFIRM_DIR) == recorded
    assert training_outcome(1, "a") is None  # the confirmation's folder, not the first draw's


def test_a_task_that_failed_is_recorded_crashed_with_its_error(artifacts):
    recorded = _record(1, _spec("a"), "", TaskFailure(kind="MemoryError", message="out of memory"))
    assert recorded.status == "crashed" and recorded.note == "MemoryError: out of memory"
    assert training_outcome(1, "a") == recorded


def test_a_candidate_with_a_recorded_outcome_is_never_trained_again(artifacts):
    decided = {
        "a": TrainingOutcome(status="pruned"),
        "b": TrainingOutcome(status="crashed", error="x"),
    }
    for name, outcome in decided.items():
        atomic_write_json(candidate_dir(1, name) / TRAINING_FILE, outcome)
    config = LoopConfig(data=str(artifacts))
    assert train_specs(1, [_spec("b"), _spec("a")], config) == {"b": decided["b"], "a": decided["a"]}
    assert list(train_specs(1, [_spec("a")], config)) == ["a"]


def test_only_trained_candidates_are_evaluated_and_registered(artifacts):
    names = {"b": "pruned", "c": "crashed", "a": "trained"}
    plan = CyclePlan(cycle=1, candidates=[_spec(n) for n in [*names, "d"]], reasons={})  # d: never trained
    atomic_write_json(cycle_dir(1) / "plan.json", plan)
    for name, status in names.items():
        folder = candidate_dir(1, name)
        atomic_write_json(folder / TRAINING_FILE, TrainingOutcome(status=status))
        atomic_write_json(folder / STUDENT_DIR / OOF_FILE, CHAMPION_OOF)
        atomic_write_json(folder / "eval_valid.json", uniform(0.5))
        atomic_write_json(
            folder / EVALUATION_FILE,
            CandidateEvaluation(eval_run_id=name, cv_run_id=None, member_valid_mae=[0.6]),
        )
    summaries = evaluate_candidates(1, LoopConfig(data=str(artifacts))).model_dump()
    assert summaries == {
        "a": {
            "vector_mae": 0.5,
            "vector_mae_rounded": uniform(0.5).vector_mae_rounded,
            "p95_latency_ms": 100.0,
            "member_valid_mae": [0.6],
        }
    }
    record = registered(1, "a").record
    assert record.eval_run_id == "a" and record.cv is not None
    assert record.cv.vector_mae == pytest.approx(0.4)
    assert (record.recipe, record.hparams) == (_spec("a").student, _spec("a").hparams)
    assert (
        record.student_dir() == entry_dir(1, "a") / "student" and (record.student_dir() / OOF_FILE).is_file()
    )
    assert not entry_dir(1, "b").exists() and not entry_dir(1, "c").exists()


def test_a_candidate_without_an_evaluation_file_has_none(artifacts):
    assert read_evaluation(1, "a") is None
    atomic_write_json(candidate_dir(1, "a") / CONFIRM_DIR / "eval_valid.json", uniform(0.5))
    evaluation = CandidateEvaluation(eval_run_id="e", cv_run_id="c", member_valid_mae=[])
    atomic_write_json(candidate_dir(1, "a") / CONFIRM_DIR / EVALUATION_FILE, evaluation)
    assert read_evaluation(1, "a") is None
    assert read_evaluation(1, "a", CONFIRM_DIR) == (uniform(0.5), evaluation)


def test_the_confirmation_draw_starts_from_the_first_draws_seed_plus_the_offset():
    spec = _spec("a").model_copy(update={"seed": 11})
    assert (
        training_seed(spec, 0) == 11 and training_seed(spec, CONFIRM_SEED_OFFSET) == 11 + CONFIRM_SEED_OFFSET
    )


def test_a_trained_candidate_not_yet_scored_is_scored_on_valid_then_registered(artifacts):
    plan = CyclePlan(cycle=1, candidates=[_spec("a")], reasons={})
    atomic_write_json(cycle_dir(1) / "plan.json", plan)
    atomic_write_json(candidate_dir(1, "a") / TRAINING_FILE, TrainingOutcome(status="trained"))
    TextBaseline("train-median").fit(ROWS[:30]).save(candidate_dir(1, "a") / STUDENT_DIR)
    config = LoopConfig(data=str(artifacts), max_eval_rows=4, latency_requests=2)
    summaries = evaluate_candidates(1, config).model_dump()
    scored, _ = read_evaluation(1, "a")
    assert scored.predictor == "cycle1-a" and scored.n_rows == 4 and scored.dataset == "data/valid"
    assert summaries["a"]["vector_mae"] == scored.vector_mae
    assert registered(1, "a").record.metrics.vector_mae == scored.vector_mae


def test_cheap_candidates_are_submitted_before_lm_members_each_group_in_its_order():
    tasks = {
        "stack/member_0": (0,),
        "stack/member_1": (1,),
        "cheap": (2,),
        "lm/member_0": (3,),
        "ridge": (4,),
    }
    order = submission_order(tasks)
    assert list(order) == ["cheap", "ridge", "stack/member_0", "stack/member_1", "lm/member_0"]
    assert order == tasks  # the same tasks, with their arguments
