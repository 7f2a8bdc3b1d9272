"""The augment stage's choices: which training rows are replayed (the worst quarter of the champion's
out-of-fold rows, worst first), what augmentation can deliver, which training set a candidate starts from,
the seed each candidate gets, and a smoke run's row cap. Fast: the champion's out-of-fold record is
written here, the shipped data, the offline teacher."""

from __future__ import annotations

import pytest

from loop.config import LoopConfig
from loop.registry import promote, register_candidate
from loop.stages.augment import (
    COPIES_PER_SOURCE,
    MAX_TEACHER_PAIRS,
    SUMMARY_FILE,
    TRAIN_FILE,
    augment,
    augment_candidate,
    capacity,
    champion_train_rows,
    replay_sources,
)
from loop.stages.inputs import candidate_dir
from tools.core.atomic import atomic_write_json
from tools.core.contracts import AugmentationSpec, CandidateSpec, CyclePlan
from tools.core.paths import cycle_dir
from tools.data.dataset import load_dataset, load_jsonl, text_key, write_jsonl
from tools.data.filters import FilterReport
from tools.student.folds import OOF_FILE, OutOfFold

COMMON = {"base_model": "bundled", "decoder": "regression", "recipe": None, "eval_run_id": None}


@pytest.fixture(scope="module")
def shipped():
    return load_dataset("shipped")


def _oof(keys: list[str], errors: list[float], shipped) -> OutOfFold:
    target = shipped.train[0].target.as_list()
    return OutOfFold(
        n_folds=5,
        keys=keys,
        source_types=["request_text"] * len(keys),
        targets=[target] * len(keys),
        predictions=[[min(10.0, t + e) for t in target] for e in errors],
    )


def _champion(tmp_path, oof: OutOfFold | None, cycle: int = 0) -> None:
    student = tmp_path / f"champion{cycle}"
    student.mkdir(parents=True, exist_ok=True)
    if oof is not None:
        atomic_write_json(student / OOF_FILE, oof)
    register_candidate(cycle, "champ", student, _report(), **COMMON)
    promote(cycle, "champ")


def _report():
    from test_gate import uniform

    return uniform(1.0)


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path


def _spec(name: str, teacher_pairs: int = 0, replay_rows: int = 0) -> CandidateSpec:
    return CandidateSpec(
        name=name,
        reason="r",
        focus_dims=["energy"],
        augmentation=AugmentationSpec(teacher_pairs=teacher_pairs, replay_rows=replay_rows),
    )


def test_replay_draws_from_the_worst_quarter_of_the_champions_out_of_fold_rows_worst_first(
    artifacts, shipped
):
    train = shipped.train[:11]
    # errors 0.1 .. 1.1 on the eleven training rows, and the worst of all on a row that is not in train
    keys = [text_key(r.request_text) for r in train] + [text_key("a request the training split lacks")]
    _champion(artifacts, _oof(keys, [0.1 * (i + 1) for i in range(11)] + [5.0], shipped))
    # 12 rows: the worst 3; the one not in train is skipped
    assert replay_sources(shipped) == [train[10], train[9]]


def test_even_a_tiny_record_replays_its_worst_row(artifacts, shipped):
    train = shipped.train[:3]
    _champion(artifacts, _oof([text_key(r.request_text) for r in train], [0.2, 0.9, 0.5], shipped))
    assert replay_sources(shipped) == [train[1]]


def test_without_a_champion_out_of_fold_record_nothing_is_replayed(artifacts, shipped):
    assert replay_sources(shipped) == []
    _champion(artifacts, None)
    assert replay_sources(shipped) == []


def test_capacity_is_two_copies_of_each_replay_source_and_the_teachers_pairs_when_there_is_one(
    artifacts, shipped
):
    train = shipped.train[:8]
    _champion(artifacts, _oof([text_key(r.request_text) for r in train], [1.0] * 8, shipped))
    offline = capacity(LoopConfig(teacher="offline"))
    assert (offline.teacher, offline.max_teacher_pairs) == ("offline", MAX_TEACHER_PAIRS)
    assert offline.max_replay_rows == COPIES_PER_SOURCE * 2 == 4
    none = capacity(LoopConfig(teacher="none"))
    assert (none.teacher, none.max_teacher_pairs, none.max_replay_rows) == ("none", 0, 4)


def test_a_candidate_starts_from_the_training_set_its_champion_was_trained_on(artifacts, shipped):
    assert champion_train_rows(shipped) == list(shipped.train)  # no champion: the training split
    _champion(artifacts, None, cycle=0)
    assert champion_train_rows(shipped) == list(shipped.train)  # a cycle-0 champion: the training split
    grown = [*shipped.train[:5], shipped.train[0].model_copy(update={"origin": "teacher:x"})]
    write_jsonl(candidate_dir(1, "champ") / TRAIN_FILE, grown)
    _champion(artifacts, None, cycle=1)
    assert champion_train_rows(shipped) == grown


def test_replay_copies_are_added_only_when_the_plan_asks_for_them(artifacts, shipped):
    train = shipped.train[:40]
    _champion(artifacts, _oof([text_key(r.request_text) for r in train], [1.0] * 40, shipped))
    config = LoopConfig(teacher="none")
    asked = augment_candidate(
        _spec("a", teacher_pairs=8, replay_rows=6), artifacts / "a", config, shipped, list(shipped.train), 1
    )
    assert asked.n_replay == 6 and asked.teacher == "none (replay only)" and asked.n_generated == 0
    augment_candidate(_spec("a", replay_rows=6), artifacts / "again", config, shipped, list(shipped.train), 1)
    written = load_jsonl(artifacts / "a" / "generated_augmented_pairs.jsonl")
    assert written == load_jsonl(artifacts / "again" / "generated_augmented_pairs.jsonl")  # seeded
    none = augment_candidate(_spec("b"), artifacts / "b", config, shipped, list(shipped.train), 1)
    assert none.n_replay == 0 and none.train_rows == len(shipped.train)


def test_a_smoke_runs_row_cap_samples_the_training_set_deterministically(artifacts, shipped):
    config = LoopConfig(teacher="offline", max_train_rows=50)
    spec = _spec("a", teacher_pairs=8)
    capped = augment_candidate(spec, artifacts / "one", config, shipped, list(shipped.train), seed=4)
    again = augment_candidate(spec, artifacts / "two", config, shipped, list(shipped.train), seed=4)
    assert capped.train_rows == 50 and capped.n_kept > 0 and capped.teacher == "offline"
    report = FilterReport.model_validate_json((artifacts / "one" / "filter_report.json").read_text())
    assert report.n_kept == capped.n_kept
    assert report.protected_rows == {"valid": len(shipped.valid), "test": len(shipped.test)}
    rows = load_jsonl(artifacts / "one" / TRAIN_FILE)
    assert rows == load_jsonl(artifacts / "two" / TRAIN_FILE) and len(rows) == 50 and again == capped
    uncapped = augment_candidate(
        spec,
        artifacts / "all",
        config.model_copy(update={"max_train_rows": None}),
        shipped,
        list(shipped.train),
        seed=4,
    )
    assert uncapped.train_rows == len(shipped.train) + uncapped.n_kept
    exactly = config.model_copy(update={"max_train_rows": uncapped.train_rows})
    augment_candidate(spec, artifacts / "exactly", exactly, shipped, list(shipped.train), seed=4)
    # at the cap: nothing sampled, the rows stay in their order (the champion's, then the new ones)
    assert load_jsonl(artifacts / "exactly" / TRAIN_FILE) == load_jsonl(artifacts / "all" / TRAIN_FILE)


def test_each_candidate_of_a_cycle_gets_its_own_seed_and_an_augmented_one_is_kept_on_resume(
    artifacts, shipped
):
    config = LoopConfig(teacher="offline", seed=3)
    plan = CyclePlan(
        cycle=2, candidates=[_spec("a", teacher_pairs=8), _spec("b", teacher_pairs=8)], reasons={}
    )
    atomic_write_json(cycle_dir(2) / "plan.json", plan)
    summaries = augment(2, config).root
    for index, name in enumerate(["a", "b"]):
        expected = augment_candidate(
            plan.candidates[index], artifacts / name, config, shipped, list(shipped.train), 3 + 2000 + index
        )
        assert summaries[name] == expected
        assert load_jsonl(candidate_dir(2, name) / TRAIN_FILE) == load_jsonl(artifacts / name / TRAIN_FILE)
    # a kill while b was being augmented: the rerun keeps a's rows as they are and augments b again
    (candidate_dir(2, "a") / TRAIN_FILE).write_text("")
    (candidate_dir(2, "b") / SUMMARY_FILE).unlink()
    assert augment(2, config).root == summaries
    assert (candidate_dir(2, "a") / TRAIN_FILE).read_text() == ""
    assert (candidate_dir(2, "b") / SUMMARY_FILE).is_file()
