"""Gate, confirm and log stages: the numeric gate over the K candidates, the winner re-confirmed with other
seeds, then the decision log, the champion pointer and the history line.

Every figure the log stage writes was fixed earlier (`gate.json` holds the champion before the cycle), and
each of its writes can be repeated: a kill at any point of the log stage, then `--resume`, gives the same
decision.json and one history line for the cycle.
"""

from __future__ import annotations

import json

from loop.config import LoopConfig
from loop.decision_log import (
    AugmentSummary,
    CandidateRow,
    DecisionRecord,
    TableRow,
    ToolCallSummary,
    WeakDim,
    hparam_patch,
    write_decision,
)
from loop.gate import CycleGate, GateConfig, gate_candidates, run_gate
from loop.history import append_history, read_history
from loop.registry import (
    baseline_reports,
    champion_report,
    current_champion,
    entry_dir,
    promote,
    registered_report,
)
from loop.stages.augment import SUMMARY_FILE
from loop.stages.candidate import (
    CONFIRM_DIR,
    CONFIRM_SEED_OFFSET,
    evaluate_folder,
    read_evaluation,
    train_specs,
    training_outcome,
)
from loop.stages.diagnose import read_diagnosis
from loop.stages.inputs import candidate_dir, dataset, read_plan
from loop.stages.scoring import evaluate_student, log_valid
from loop.state import now_iso
from tools.core.atomic import atomic_write_json
from tools.core.contracts import (
    CandidateOutcome,
    CandidateSpec,
    CycleHistoryEntry,
    HParams,
    ModelRecord,
)
from tools.core.paths import cycle_dir
from tools.core.steering import Approval, allows_promotion, read_approval
from tools.evaluation.metrics import EvalReport

GATE_FILE = "gate.json"


def read_gate(cycle: int) -> CycleGate:
    return CycleGate.model_validate_json((cycle_dir(cycle) / GATE_FILE).read_text())


def gate(cycle: int, config: LoopConfig) -> CycleGate:
    """Each evaluated candidate against the champion (Holm over K) and the reference baselines."""
    plan = read_plan(cycle)
    champion = current_champion()
    if champion is None:
        raise FileNotFoundError("no champion: run cycle 0 first")
    evaluated = {s.name: done[0] for s in plan.candidates if (done := read_evaluation(cycle, s.name))}
    result = gate_candidates(
        champion,
        champion_report(),
        evaluated,
        {s.name: list(s.focus_dims) for s in plan.candidates},
        config.gate,
        baseline_reports(),
    )
    atomic_write_json(cycle_dir(cycle) / GATE_FILE, result)
    return result


def confirmation_skipped(spec: CandidateSpec, gate: GateConfig) -> str | None:
    """Why the winner needs no second draw of seeds, or None when it must be confirmed."""
    if not gate.confirm:
        return "confirmation switched off (gate.confirm = false)"
    if not spec.student.uses_lm:
        return "no language model in the recipe: its predictions do not depend on the seed"
    return None


def candidate_to_promote(gate: CycleGate, approval: Approval | None) -> str | None:
    """The candidate the log stage makes champion: the gate's winner, only once it passed its confirmation
    (or needed none) and, in approve mode, once a person approved it."""
    return gate.winner if gate.promoted and allows_promotion(approval) else None


def confirm(cycle: int, config: LoopConfig) -> CycleGate:
    """The winner's recipe trained again with other seeds must pass the gate on its own (uncorrected)."""
    result = read_gate(cycle)
    if result.winner is None or result.confirm is not None or result.confirm_note:
        return result
    spec = read_plan(cycle).candidate(result.winner)
    if skip := confirmation_skipped(spec, config.gate):
        result.confirm_note = skip
    else:
        outcome = train_specs(cycle, [spec], config, seed_offset=CONFIRM_SEED_OFFSET, folder=CONFIRM_DIR)[
            spec.name
        ]
        if outcome.status != "trained":
            result.confirm_note = f"second-seed training {outcome.status}: {outcome.note}"
            result.confirm = None
            result.winner = None
        else:
            done = read_evaluation(cycle, spec.name, CONFIRM_DIR)
            report = done[0] if done else evaluate_folder(cycle, spec, config, CONFIRM_DIR)[0]
            champion = registered_report(result.champion_before.cycle, result.champion_before.candidate)
            result.confirm = run_gate(
                champion, report, list(spec.focus_dims), config.gate, baseline_reports()
            )
            result.confirm_note = (
                f"seeds +{CONFIRM_SEED_OFFSET}: {'passed' if result.confirm.promoted else 'failed'}"
            )
    atomic_write_json(cycle_dir(cycle) / GATE_FILE, result)
    return result


# --- log -----------------------------------------------------------------------------------------


def _spec_hparams(champion: ModelRecord, config: LoopConfig) -> HParams:
    """The hyperparameters the champion was trained with (the defaults for a cycle-0 champion)."""
    if champion.cycle == 0:
        return config.default_hparams()
    return read_plan(champion.cycle).candidate(champion.candidate).hparams


def _candidate_rows(cycle: int, config: LoopConfig, result: CycleGate, promoted: bool) -> list[CandidateRow]:
    plan = read_plan(cycle)
    before = _spec_hparams(result.champion_before, config)
    rows = []
    for spec in plan.candidates:
        outcome = training_outcome(cycle, spec.name)
        evaluation = read_evaluation(cycle, spec.name)
        gated = result.candidates.get(spec.name)
        summary_path = candidate_dir(cycle, spec.name) / SUMMARY_FILE
        if outcome is None or outcome.status != "trained":
            status = outcome.status if outcome else "crashed"
        elif spec.name == result.winner:
            status = "promoted" if promoted else "winner"
        else:
            status = "rejected"
        rows.append(
            CandidateRow(
                name=spec.name,
                description=spec.describe(),
                reason=spec.reason,
                status=status,  # type: ignore[arg-type]
                note=outcome.note if outcome else "never trained",
                hparam_patch=hparam_patch(before, spec.hparams),
                augmentation=AugmentSummary.model_validate_json(summary_path.read_text())
                if summary_path.exists()
                else None,
                cv_mae=outcome.result.cv_mae if outcome and outcome.result else None,
                cv_mae_rounded=outcome.result.cv_mae_rounded if outcome and outcome.result else None,
                valid=TableRow.from_report(spec.name, evaluation[0]) if evaluation else None,
                p_value=result.p_values.get(spec.name),
                holm_threshold=result.holm_thresholds.get(spec.name),
                failed_checks=gated.failed if gated else [],
                member_valid_mae=evaluation[1].member_valid_mae if evaluation else [],
                training_wall_s=outcome.result.wall_s if outcome and outcome.result else None,
            )
        )
    return rows


def _sources(cycle: int) -> tuple[list[ToolCallSummary], list[str]]:
    path = cycle_dir(cycle) / "mcp_eval_snapshot.json"
    calls = json.loads(path.read_text()).get("calls", []) if path.exists() else []
    sources = [
        ToolCallSummary(
            name=c["name"],
            arguments=c.get("arguments", {}),
            is_error=c.get("is_error", False),
            latency_ms=c.get("latency_ms", 0.0),
        )
        for c in calls
    ]
    runs = sorted({str(c["arguments"]["run_id"]) for c in calls if "run_id" in c.get("arguments", {})})
    return sources, runs


def build_decision(cycle: int, config: LoopConfig, started_at: str) -> DecisionRecord:
    """The whole record, from what earlier stages wrote (nothing here reads the live champion pointer)."""
    plan = read_plan(cycle)
    result = read_gate(cycle)
    before = result.champion_before
    champion_valid = registered_report(before.cycle, before.candidate)
    table = []
    winner_gate = result.candidates.get(result.winner) if result.winner else None
    if result.winner:
        table.append(TableRow.from_report(f"winner {result.winner}", registered_report(cycle, result.winner)))
    table.append(TableRow.from_report(f"champion (cycle {before.cycle} {before.candidate})", champion_valid))
    for name, baseline in baseline_reports().items():
        if baseline.data_hash == champion_valid.data_hash:
            table.append(TableRow.from_report(f"baseline {name}", baseline))
    diagnosis = read_diagnosis(cycle)
    sources, runs = _sources(cycle)
    approval = read_approval(cycle)  # approve mode: a person (or the timeout) decided the winner's fate
    promoted = candidate_to_promote(result, approval) is not None
    after = promoted_record(cycle, result) if promoted else before
    return DecisionRecord(
        cycle=cycle,
        started_at=started_at,
        finished_at=now_iso(),
        verdict="promoted" if promoted else "rejected",
        sources=sources,
        runs_read=runs,
        weak_dims=[
            WeakDim(
                dim=w.dim,
                champion_cv_mae=w.champion_cv_mae,
                constant_cv_mae=w.constant_cv_mae,
                focus=w.dim in plan.focus_dims,
            )
            for w in diagnosis.weak_dims
        ],
        learnability=diagnosis.learnability,
        plan=plan,
        candidates=_candidate_rows(cycle, config, result, promoted),
        winner=result.winner,
        table=table,
        gate=result,
        winner_gate=winner_gate,
        champion_before=before,
        champion_after=after,
        approval=approval,
    )


def promoted_record(cycle: int, result: CycleGate) -> ModelRecord:
    from loop.registry import registered

    assert result.winner is not None
    return registered(cycle, result.winner).record


def log_decision(cycle: int, config: LoopConfig, started_at: str, wall_s: float | None) -> DecisionRecord:
    """Write the record (once), promote the winner if the gate said so, score test for the record, and
    append the history line (once). Safe to repeat after a kill at any point."""
    out = cycle_dir(cycle)
    if (out / "decision.json").is_file():
        record = DecisionRecord.model_validate_json((out / "decision.json").read_text())
    else:
        record = build_decision(cycle, config, started_at)
    write_decision(record, out)  # the same bytes for the same record: a repeat rewrites nothing new
    if (winner := candidate_to_promote(record.gate, record.approval)) is not None:
        promote(cycle, winner)
        evaluate_test_for_the_record(cycle, winner, config)
    if not any(e.cycle == cycle and e.status in ("promoted", "rejected") for e in read_history()):
        append_history(history_entry(record, wall_s))
    return record


def history_entry(record: DecisionRecord, wall_s: float | None) -> CycleHistoryEntry:
    best = min(
        (c for c in record.candidates if c.valid is not None),
        key=lambda c: c.valid.vector_mae if c.valid and c.valid.vector_mae is not None else float("inf"),
        default=None,
    )
    outcomes = []
    for row, spec in zip(record.candidates, record.plan.candidates, strict=True):
        status = {"winner": "rejected"}.get(row.status, row.status)
        outcomes.append(
            CandidateOutcome(
                name=row.name,
                recipe_key=spec.recipe_key(),
                description=row.description,
                status=status,  # type: ignore[arg-type]
                cv_mae=row.cv_mae,
                cv_mae_rounded=row.cv_mae_rounded,
                valid_mae=row.valid.vector_mae if row.valid else None,
                valid_mae_rounded=row.valid.vector_mae_rounded if row.valid else None,
                failed_checks=row.failed_checks,
                note=row.note,
                focus_dims=list(spec.focus_dims),
                p_better=None if row.p_value is None else round(1 - row.p_value, 4),
            )
        )
    failed = (
        record.winner_gate.failed
        if record.winner_gate
        else (sorted({check for c in record.candidates for check in c.failed_checks}))
    )
    winner_text = f"winner {record.winner}" if record.winner else "no candidate passed"
    if record.approval and record.approval.status != "pending":
        winner_text += (
            f" ({record.approval.status} by {record.approval.decided_by} at {record.approval.decided_at})"
        )
    return CycleHistoryEntry(
        cycle=record.cycle,
        status=record.verdict,
        description=f"{len(record.candidates)} candidates ({record.plan.planner}); {winner_text}; "
        + "; ".join(f"{o.name}: {o.status}" for o in outcomes),
        focus_dims=record.plan.focus_dims,
        candidates=outcomes,
        champion_mae=record.champion_before.metrics.vector_mae,
        candidate_mae=best.valid.vector_mae if best and best.valid else None,
        candidate_mae_rounded=best.valid.vector_mae_rounded if best and best.valid else None,
        gate_failed_checks=failed,
        wall_s=wall_s,
        started_at=record.started_at,
        finished_at=record.finished_at,
    )


def evaluate_test_for_the_record(cycle: int, name: str, config: LoopConfig) -> None:
    """The test split (when the dataset has one) is scored and logged for the record only: nothing in the
    loop or the agent reads it. The TF-IDF ridge is scored once beside it."""
    from tools.student.interface import load_student

    data = dataset(config)
    if not data.test:
        return
    record_file = "eval_test_record.json"
    subjects = [(cycle, name)]
    if not (entry_dir(0, "tfidf-ridge") / record_file).exists():
        subjects.append((0, "tfidf-ridge"))
    for subject_cycle, subject in subjects:
        folder = entry_dir(subject_cycle, subject) / "student"
        student = load_student(config.base_model, folder)
        report: EvalReport = evaluate_student(
            student,
            data.test,
            predictor=f"cycle{subject_cycle}-{subject}",
            dataset=f"{data.name}/test",
            config=config,
        )
        log_valid(
            report,
            cycle=subject_cycle,
            name=f"{subject}-test-record",
            role="test_record",
            extra={"split": "test"},
        )
        atomic_write_json(entry_dir(subject_cycle, subject) / record_file, report)
