"""The gate, confirm and log stages. The log stage decides nothing new: it makes the gate's winner champion only once it passed its
confirmation (or needed none) and, in approve mode, once a person approved it; it writes one decision and
one history line per cycle, whatever it repeats. Fast: a registry, a plan and a gate written here, no
training; a dataset without a test split (nothing to score for the record)."""

from __future__ import annotations

import json

import pytest
from test_gate import ROWS, uniform

from loop.config import LoopConfig
from loop.gate import GateConfig, gate_candidates, run_gate
from loop.history import append_history, read_history
from loop.registry import (
    champion_report,
    current_champion,
    entry_dir,
    promote,
    register_candidate,
    registry_dir,
)
from loop.stages.candidate import (
    CONFIRM_DIR,
    CONFIRM_SEED_OFFSET,
    EVALUATION_FILE,
    TRAINING_FILE,
    CandidateEvaluation,
    TrainingOutcome,
    read_evaluation,
)
from loop.stages.decide import (
    GATE_FILE,
    _spec_hparams,
    confirm,
    gate,
    history_entry,
    log_decision,
    read_gate,
)
from loop.stages.diagnose import DIAGNOSIS_FILE
from loop.stages.inputs import candidate_dir, read_plan
from tools.core.atomic import atomic_write_json
from tools.core.contracts import AugmentationSpec, CandidateSpec, CyclePlan, Diagnosis, HParams, StudentRecipe
from tools.core.paths import cycle_dir, loop_dir
from tools.core.steering import Approval, approval_path
from tools.data.dataset import write_jsonl
from tools.evaluation.metrics import EvalReport

COMMON = {"base_model": "bundled", "decoder": "regression", "recipe": None, "eval_run_id": None}
CHAMPION = uniform(1.0)
# a: the winner (gain 0.5); b: no better than the champion (fails the margin and the bootstrap)
REPORTS = {"a": uniform(0.5), "b": uniform(1.2)}


def _spec(name: str) -> CandidateSpec:
    return CandidateSpec(
        name=name,
        reason="r",
        focus_dims=["energy"],
        augmentation=AugmentationSpec(teacher_pairs=0, replay_rows=0),
        student=StudentRecipe(family="stack"),
    )


@pytest.fixture
def config(tmp_path, monkeypatch) -> LoopConfig:
    """Cycle 1 up to its log stage: champion train-median (cycle 0), candidates a and b trained, evaluated,
    registered and gated."""
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    data = tmp_path / "data"
    write_jsonl(data / "valid.jsonl", ROWS)
    train = [
        r.model_copy(update={"request_text": f"a training sentence, number {i}"})
        for i, r in enumerate(ROWS[:30])
    ]
    write_jsonl(data / "train.jsonl", train)
    register_candidate(0, "train-median", None, CHAMPION, **COMMON)
    promote(0, "train-median")
    for name, report in REPORTS.items():
        register_candidate(1, name, None, report, **COMMON)
        folder = candidate_dir(1, name)
        atomic_write_json(folder / TRAINING_FILE, TrainingOutcome(status="trained"))
        atomic_write_json(folder / "eval_valid.json", report)
        atomic_write_json(
            folder / EVALUATION_FILE,
            CandidateEvaluation(eval_run_id=name, cv_run_id=None, member_valid_mae=[]),
        )
    plan = CyclePlan(cycle=1, candidates=[_spec(n) for n in REPORTS], reasons={"focus": "energy"})
    atomic_write_json(cycle_dir(1) / "plan.json", plan)
    atomic_write_json(
        cycle_dir(1) / DIAGNOSIS_FILE, Diagnosis(cycle=1, evidence="e", weak_dims=[], learnability=[])
    )
    gated = gate_candidates(
        current_champion(), champion_report(), REPORTS, dict.fromkeys(REPORTS, ["energy"]), GateConfig(), {}
    )
    assert gated.winner == "a"
    atomic_write_json(cycle_dir(1) / GATE_FILE, gated)
    return LoopConfig(data=str(data))


def _confirmed(by: float) -> None:
    """The winner's second draw scored `by` off on every dim (0.5 passes, 1.0 is no better than the champion)."""
    gated = read_gate(1)
    gated.confirm = run_gate(CHAMPION, uniform(by), ["energy"], GateConfig())
    atomic_write_json(cycle_dir(1) / GATE_FILE, gated)


def test_a_confirmed_winner_becomes_champion_and_its_cycle_is_logged_promoted(config):
    _confirmed(by=0.5)
    record = log_decision(1, config, "2026-12-07T00:00:00+00:00", 3.0)
    assert (current_champion().cycle, current_champion().candidate) == (1, "a")
    assert record.verdict == "promoted" and record.champion_after.candidate == "a"
    assert {c.name: c.status for c in record.candidates} == {"a": "promoted", "b": "rejected"}
    (entry,) = read_history()
    assert entry.status == "promoted" and entry.wall_s == 3.0
    assert {o.name: o.status for o in entry.candidates} == {"a": "promoted", "b": "rejected"}


def test_a_winner_that_failed_its_confirmation_stays_out_and_the_champion_is_unchanged(config):
    _confirmed(by=1.0)
    record = log_decision(1, config, "2026-12-07T00:00:00+00:00", None)
    assert log_decision(1, config, "2026-12-07T00:00:00+00:00", None) == record  # a repeat adds no line
    assert (current_champion().cycle, current_champion().candidate) == (0, "train-median")
    assert record.verdict == "rejected" and record.champion_after == record.champion_before
    assert {c.name: c.status for c in record.candidates} == {"a": "winner", "b": "rejected"}
    (entry,) = read_history()
    assert entry.status == "rejected"
    # the history knows no "winner": an unpromoted winner is a rejected candidate
    assert {o.name: o.status for o in entry.candidates} == {"a": "rejected", "b": "rejected"}
    assert json.loads((cycle_dir(1) / "decision.json").read_text())["verdict"] == "rejected"


@pytest.mark.parametrize(("status", "champion"), [("pending", 0), ("rejected", 0), ("approved", 1)])
def test_in_approve_mode_the_log_stage_promotes_only_an_approved_winner(config, status, champion):
    approval = Approval(cycle=1, candidate="a", status=status, pending_since="2026-12-07T00:00:00+00:00")
    atomic_write_json(approval_path(1), approval)
    record = log_decision(1, config, "2026-12-07T00:00:00+00:00", None)
    assert current_champion().cycle == champion
    assert record.verdict == ("promoted" if champion else "rejected") and record.approval == approval


def test_repeating_the_log_stage_writes_one_history_line_and_the_same_decision(config):
    first = log_decision(1, config, "2026-12-07T00:00:00+00:00", 3.0)
    written = (cycle_dir(1) / "decision.json").read_bytes()
    again = log_decision(1, config, "2026-12-07T09:00:00+00:00", 9.0)
    assert again == first and (cycle_dir(1) / "decision.json").read_bytes() == written
    assert [e.cycle for e in read_history()] == [1]


def test_the_history_line_names_the_winner_the_best_valid_mae_and_what_the_winner_failed(config):
    record = log_decision(1, config, "2026-12-07T00:00:00+00:00", None)
    entry = history_entry(record, None)
    assert entry.candidate_mae == pytest.approx(0.5) and entry.champion_mae == CHAMPION.vector_mae
    assert entry.gate_failed_checks == []  # the winner's own checks
    assert entry.description.startswith("2 candidates (offline); winner a; a: promoted; b: rejected")
    b = next(o for o in entry.candidates if o.name == "b")
    assert set(b.failed_checks) >= {"mae_margin", "bootstrap"} and b.valid_mae == pytest.approx(1.2)
    assert b.p_better == pytest.approx(round(1 - record.gate.p_values["b"], 4))


def test_without_a_winner_the_history_line_collects_every_failed_check(config):
    gated = read_gate(1)
    gated.winner, gated.winner_gain = None, None
    atomic_write_json(cycle_dir(1) / GATE_FILE, gated)
    entry = history_entry(log_decision(1, config, "2026-12-07T00:00:00+00:00", None), None)
    assert entry.status == "rejected" and "no candidate passed" in entry.description
    assert entry.gate_failed_checks == sorted(set(gated.candidates["b"].failed))
    assert current_champion().cycle == 0


# --- the gate and confirm stages ----------------------------------------------------------------------


def test_the_gate_stage_gates_every_evaluated_candidate_of_the_plan_against_the_champion(config):
    (cycle_dir(1) / GATE_FILE).unlink()
    (candidate_dir(1, "b") / EVALUATION_FILE).unlink()  # b trained but never evaluated: not gated
    result = gate(1, config)
    assert read_gate(1) == result and set(result.candidates) == {"a"}
    assert result.champion_before == current_champion() and result.winner == "a"
    # the champion is the train-median constant, also a reference baseline
    baselines = {"train-median": CHAMPION}
    assert result.candidates["a"] == run_gate(CHAMPION, REPORTS["a"], ["energy"], config.gate, baselines)


def test_the_gate_stage_needs_a_champion(config):
    (registry_dir() / "champion.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"^no champion: run cycle 0 first$"):
        gate(1, config)


def _second_draw(status: str, by: float | None = None) -> None:
    """What a resumed confirm stage finds of the winner's second draw: its outcome, and its evaluation."""
    folder = candidate_dir(1, "a") / CONFIRM_DIR
    atomic_write_json(folder / TRAINING_FILE, TrainingOutcome(status=status, error="boom"))
    if by is not None:
        atomic_write_json(folder / "eval_valid.json", uniform(by))
        atomic_write_json(
            folder / EVALUATION_FILE,
            CandidateEvaluation(eval_run_id="c", cv_run_id=None, member_valid_mae=[]),
        )


@pytest.mark.parametrize(("by", "passed"), [(0.5, True), (1.0, False)])
def test_the_winners_second_draw_is_gated_alone_against_the_champion_before_the_cycle(config, by, passed):
    _second_draw("trained", by)
    promote(1, "b")  # whatever the pointer says now, the confirmation compares with the champion before
    result = confirm(1, config)
    baselines = {"train-median": CHAMPION}
    assert result.confirm == run_gate(CHAMPION, uniform(by), ["energy"], config.gate, baselines)
    assert result.promoted is passed and result.winner == "a"
    assert result.confirm_note == f"seeds +{CONFIRM_SEED_OFFSET}: {'passed' if passed else 'failed'}"
    assert read_gate(1) == result


def test_a_winner_whose_second_draw_did_not_train_loses_its_win(config):
    _second_draw("crashed")
    result = confirm(1, config)
    assert result.winner is None and result.confirm is None and not result.promoted
    assert result.confirm_note == "second-seed training crashed: boom"
    assert read_gate(1) == result


def test_a_winner_without_randomness_is_not_confirmed_and_the_gate_says_why(config, monkeypatch):
    plan = read_plan(1)
    cheap = StudentRecipe(family="stack", components=["train-median", "tfidf-ridge"])
    plan.candidates[0] = plan.candidates[0].model_copy(update={"student": cheap})
    atomic_write_json(cycle_dir(1) / "plan.json", plan)
    result = confirm(1, config)
    assert result.confirm is None and result.promoted
    assert result.confirm_note.startswith("no language model in the recipe")
    assert read_gate(1) == result


def test_a_confirmation_already_decided_or_without_a_winner_is_not_run_again(config):
    _second_draw("crashed")
    decided = read_gate(1)
    decided.confirm_note = "seeds +1000: passed"
    atomic_write_json(cycle_dir(1) / GATE_FILE, decided)
    assert confirm(1, config) == decided  # the crashed second draw on disk is never read
    decided.confirm_note, decided.winner = "", None
    atomic_write_json(cycle_dir(1) / GATE_FILE, decided)
    assert confirm(1, config) == decided


def test_a_cycles_history_line_is_written_whatever_earlier_cycles_decided(config):
    log_decision(1, config, "2026-12-07T00:00:00+00:00", None)
    (entry,) = read_history()
    (loop_dir() / "history.jsonl").unlink()
    append_history(entry.model_copy(update={"cycle": 0, "status": "rejected"}))
    log_decision(1, config, "2026-12-07T00:00:00+00:00", None)  # the log stage resumed after the pointer swap
    assert [(e.cycle, e.status) for e in read_history()] == [(0, "rejected"), (1, "promoted")]


def test_a_candidates_hparam_patch_is_against_what_the_champion_was_trained_with(config):
    """The cycle-0 champion: the defaults. A later champion: its own plan's hparams."""
    tuned = HParams(learning_rate=1e-3, lora_r=16)
    plan = read_plan(1)
    plan.candidates[0] = plan.candidates[0].model_copy(update={"hparams": tuned})
    atomic_write_json(cycle_dir(1) / "plan.json", plan)
    assert _spec_hparams(current_champion(), config) == config.default_hparams()
    assert _spec_hparams(promote(1, "a"), config) == tuned


def _baseline_student(folder, kind: str = "train-median"):
    from tools.evaluation.baselines import TextBaseline

    TextBaseline(kind).fit(ROWS[:30]).save(folder)
    return folder


def test_a_second_draw_not_yet_evaluated_is_scored_on_valid_in_the_confirmation_folder(config):
    """A resumed confirm stage whose second draw trained but was never scored: it is scored now, where
    its first draw's evaluation is never overwritten."""
    _second_draw("trained")
    _baseline_student(candidate_dir(1, "a") / CONFIRM_DIR / "student")
    result = confirm(1, config.model_copy(update={"max_eval_rows": 4, "latency_requests": 2}))
    scored, _ = read_evaluation(1, "a", CONFIRM_DIR)
    assert scored.predictor == "cycle1-a-confirm" and scored.n_rows == 4
    assert result.confirm == run_gate(CHAMPION, scored, ["energy"], config.gate, {"train-median": CHAMPION})
    assert read_evaluation(1, "a")[0] == REPORTS["a"]


def test_the_promoted_winner_and_the_tfidf_ridge_are_scored_on_test_for_the_record_once(config, tmp_path):
    data = tmp_path / "data"
    write_jsonl(
        data / "test.jsonl",
        [r.model_copy(update={"request_text": f"held out {i}"}) for i, r in enumerate(ROWS[:3])],
    )
    students = tmp_path / "students"
    register_candidate(1, "a", _baseline_student(students / "a"), REPORTS["a"], **COMMON)
    register_candidate(0, "tfidf-ridge", _baseline_student(students / "t", "tfidf-ridge"), CHAMPION, **COMMON)
    log_decision(1, config, "2026-12-07T00:00:00+00:00", None)
    record = EvalReport.model_validate_json((entry_dir(1, "a") / "eval_test_record.json").read_text())
    assert record.dataset == "data/test" and record.n_rows == 3 and record.predictor == "cycle1-a"
    ridge = entry_dir(0, "tfidf-ridge") / "eval_test_record.json"
    assert EvalReport.model_validate_json(ridge.read_text()).predictor == "cycle0-tfidf-ridge"
    assert not (entry_dir(1, "b") / "eval_test_record.json").exists()


def test_a_candidate_that_did_not_train_is_logged_with_what_became_of_it(config):
    atomic_write_json(candidate_dir(1, "b") / TRAINING_FILE, TrainingOutcome(status="pruned"))
    record = log_decision(1, config, "2026-12-07T00:00:00+00:00", None)
    assert {c.name: c.status for c in record.candidates} == {"a": "promoted", "b": "pruned"}
    assert {o.name: o.status for o in read_history()[0].candidates} == {"a": "promoted", "b": "pruned"}


def test_the_ridge_already_scored_on_test_is_not_scored_again(config, tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "test.jsonl", [ROWS[0].model_copy(update={"request_text": "held out"})])
    students = tmp_path / "students"
    register_candidate(1, "a", _baseline_student(students / "a"), REPORTS["a"], **COMMON)
    register_candidate(0, "tfidf-ridge", _baseline_student(students / "t", "tfidf-ridge"), CHAMPION, **COMMON)
    earlier = entry_dir(0, "tfidf-ridge") / "eval_test_record.json"
    atomic_write_json(earlier, CHAMPION)  # scored when an earlier cycle was promoted
    log_decision(1, config, "2026-12-07T00:00:00+00:00", None)
    assert EvalReport.model_validate_json(earlier.read_text()) == CHAMPION
    assert (entry_dir(1, "a") / "eval_test_record.json").is_file()
