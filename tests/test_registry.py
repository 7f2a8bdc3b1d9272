"""The champion registry: every evaluated candidate is kept, only promote() makes one champion, rollback
restores only former champions, and records survive moving the artifacts folder."""

from __future__ import annotations

import shutil

import pytest

from loop.registry import (
    EVAL_FILE,
    baseline_reports,
    champion_oof,
    champion_report,
    current_champion,
    entry_dir,
    promote,
    promoted_candidate,
    register_candidate,
    registered,
    registered_report,
    rollback,
)
from tools.core.contracts import HParams, StudentRecipe
from tools.core.paths import artifacts_dir
from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.metrics import EvalReport, build_report, score_row
from tools.student.folds import OOF_FILE, OutOfFold


@pytest.fixture(autouse=True)
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


def report(offset: float, *, latencies=(10.0, 30.0), data_hash: str = "h") -> EvalReport:
    rows = [
        TrainingRow(
            request_text=f"r{i}", source_type=SourceType.rule_prompt, target=ParamVector.from_list([i] * 6)
        )
        for i in range(2)
    ]
    results = [
        score_row(i, row, Prediction(values=[i + offset] * 6, json_valid=True, latency_ms=latency), "model")
        for i, (row, latency) in enumerate(zip(rows, latencies, strict=True))
    ]
    return build_report(results, predictor="p", decoder="regression", dataset="x/valid", data_hash=data_hash)


def student(tmp_path, name: str = "student", files: dict[str, str] | None = None):
    folder = tmp_path / name
    folder.mkdir()
    for relative, text in (files or {"weights.bin": "w"}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def register(cycle: int, name: str, folder=None, offset: float = 0.5, **kwargs):
    return register_candidate(
        cycle,
        name,
        folder,
        kwargs.pop("evaluation", report(offset)),
        base_model="bundled",
        decoder="regression",
        recipe=kwargs.pop("recipe", StudentRecipe()),
        eval_run_id=f"run-{cycle}-{name}",
        **kwargs,
    )


def test_registering_keeps_the_student_and_the_report_but_never_makes_a_champion(tmp_path, artifacts):
    folder = student(tmp_path, files={"weights.bin": "w", "checkpoint-25/state": "s", "checkpoints/x": "c"})
    record = register(1, "a", folder, hparams=HParams(epochs=2), evaluation=report(0.5), cv=report(0.25))
    assert current_champion() is None
    assert record.student_path == "registry/cycle_1/a/student"
    assert record.student_dir() == artifacts / "registry" / "cycle_1" / "a" / "student"
    stored = sorted(p.relative_to(record.student_dir()).as_posix() for p in record.student_dir().rglob("*"))
    assert stored == ["weights.bin"]  # checkpoints are not part of a trained student
    assert registered_report(1, "a") == report(0.5)
    assert (record.cycle, record.candidate, record.eval_run_id) == (1, "a", "run-1-a")
    assert (record.decoder, record.base_model, record.recipe) == ("regression", "bundled", StudentRecipe())
    assert record.hparams == HParams(epochs=2)
    assert registered(1, "a").promoted is False and registered(1, "a").record == record


def test_the_record_carries_the_reports_figures():
    evaluation, cv = report(0.75, latencies=(10.0, 30.0)), report(0.25)
    record = register(1, "a", evaluation=evaluation, cv=cv)
    metrics = record.metrics
    assert (metrics.vector_mae, metrics.vector_mae_rounded, metrics.mse_norm) == (0.75, 1.0, 0.005625)
    assert metrics.r2 == evaluation.r2 and metrics.json_valid_rate == 1.0 and metrics.fallback_rate == 0.0
    assert (metrics.p50_latency_ms, metrics.p95_latency_ms) == (20.0, 29.0)
    assert metrics.per_dim_mae == evaluation.per_dim_mae and metrics.n_rows == 2
    assert record.cv is not None and record.cv.vector_mae == 0.25
    assert register(1, "b", evaluation=evaluation).cv is None


def test_only_promote_makes_a_rejected_candidate_champion():
    register(0, "base-skeleton", offset=2.0, recipe=None)
    promote(0, "base-skeleton")
    register(1, "a", offset=1.0)
    register(1, "b", offset=0.5)
    assert current_champion().candidate == "base-skeleton"  # registering a better one changes nothing
    assert champion_report() == registered_report(0, "base-skeleton")
    promoted = promote(1, "b")
    assert current_champion() == promoted == registered(1, "b").record
    assert registered(1, "b").promoted and not registered(1, "a").promoted
    assert champion_report() == report(0.5)
    assert promote(1, "b") == promoted and current_champion() == promoted  # repeating changes nothing


def test_re_registering_a_promoted_candidate_keeps_it_promoted_and_replaces_its_student(tmp_path):
    register(1, "a", student(tmp_path, "first", {"old.bin": "1"}))
    promote(1, "a")
    record = register(1, "a", student(tmp_path, "second", {"new.bin": "2"}))
    assert registered(1, "a").promoted
    assert [p.name for p in record.student_dir().iterdir()] == ["new.bin"]


def test_rollback_restores_a_former_champion():
    register(1, "a", offset=1.0)
    register(1, "b", offset=0.9)
    promote(1, "b")
    register(2, "a", offset=0.5)
    promote(2, "a")
    assert promoted_candidate(1) == "b"
    restored = rollback(1)
    assert restored == registered(1, "b").record == current_champion()
    assert registered(2, "a").promoted  # cycle 2 stays a former champion: it can come back
    assert rollback(2) == current_champion() == registered(2, "a").record


def test_rollback_to_a_cycle_that_was_never_promoted_is_refused():
    register(1, "a")
    promote(1, "a")
    register(2, "a", offset=0.4)
    register(2, "b", offset=0.3)
    with pytest.raises(
        ValueError, match="^cycle 2 was never promoted; only former champions can be restored$"
    ):
        rollback(2)
    with pytest.raises(FileNotFoundError, match="^cycle 7 has no registered candidate in "):
        rollback(7)
    assert current_champion() == registered(1, "a").record


def test_an_unknown_candidate_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="cycle 3 has no registered candidate 'x'"):
        registered(3, "x")
    with pytest.raises(FileNotFoundError, match="cycle 3 has no registered candidate 'x'"):
        promote(3, "x")
    with pytest.raises(
        FileNotFoundError, match=r"^no champion yet: run cycle 0 first \(python -m loop.run --cycle 0\)$"
    ):
        champion_report()


def test_records_stay_valid_when_the_artifacts_folder_moves(tmp_path, artifacts, monkeypatch):
    register(1, "a", student(tmp_path))
    promote(1, "a")
    moved = tmp_path / "elsewhere"
    shutil.move(artifacts, moved)
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(moved))
    assert artifacts_dir() == moved.resolve()
    assert current_champion().student_dir() == moved.resolve() / "registry" / "cycle_1" / "a" / "student"
    assert (current_champion().student_dir() / "weights.bin").read_text() == "w"


def test_the_champions_out_of_fold_record_is_read_from_its_student_folder(tmp_path):
    assert champion_oof() is None  # no champion
    register(0, "base-skeleton", recipe=None)
    promote(0, "base-skeleton")
    assert champion_oof() is None  # the untouched base model has no folder
    register(1, "a", student(tmp_path))
    promote(1, "a")
    assert champion_oof() is None  # a folder without out-of-fold predictions
    oof = OutOfFold(
        n_folds=3, keys=["k"], source_types=["rule_prompt"], targets=[[1] * 6], predictions=[[2.0] * 6]
    )
    (current_champion().student_dir() / OOF_FILE).write_text(oof.model_dump_json())
    assert champion_oof() == oof
    assert champion_oof(registered(0, "base-skeleton").record) is None


def test_the_reference_baselines_are_the_ones_registered_at_cycle_0():
    assert baseline_reports() == {}
    register(0, "train-median", offset=1.0)
    register(0, "additive-ridge", offset=0.7)  # a candidate baseline, not a reference
    register(1, "tfidf-ridge", offset=0.8)  # not cycle 0
    assert baseline_reports() == {"train-median": report(1.0)}
    register(0, "tfidf-ridge", offset=0.8)
    assert baseline_reports() == {"train-median": report(1.0), "tfidf-ridge": report(0.8)}
    assert (entry_dir(0, "tfidf-ridge") / EVAL_FILE).is_file()
