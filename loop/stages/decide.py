"""Gate and log stages: the numeric gate's verdict, then the decision log, the champion pointer and the history line."""

from __future__ import annotations

import json

from loop.config import LoopConfig
from loop.decision_log import (
    AugmentSummary,
    DecisionRecord,
    TableRow,
    ToolCallSummary,
    WeakDim,
    hparam_patch,
    write_decision,
)
from loop.gate import GateResult, run_gate
from loop.history import append_history
from loop.registry import champion_report, current_champion, cycle_entry, promote
from loop.stages.inputs import dataset, read_plan
from loop.state import now_iso
from tools.core.atomic import atomic_write_json
from tools.core.contracts import ChampionRecord, CycleHistoryEntry, HParams, LearnabilitySlice
from tools.core.paths import cycle_dir
from tools.evaluation.harness import evaluate
from tools.evaluation.metrics import EvalReport


def gate(cycle: int, config: LoopConfig) -> GateResult:
    champion = champion_report()
    candidate = EvalReport.model_validate_json((cycle_dir(cycle) / "eval_candidate.json").read_text())
    constant_path = cycle_dir(0) / "eval_baseline_train-median.json"
    constant = EvalReport.model_validate_json(constant_path.read_text()) if constant_path.exists() else None
    result = run_gate(champion, candidate, list(read_plan(cycle).focus_dims), config.gate, constant=constant)
    atomic_write_json(cycle_dir(cycle) / "gate.json", result)
    return result


def log_decision(cycle: int, config: LoopConfig, started_at: str, wall_s: float | None) -> DecisionRecord:
    """Promote or not (as the gate said), render the decision log, append the history line."""
    out = cycle_dir(cycle)
    plan = read_plan(cycle)
    result = GateResult.model_validate_json((out / "gate.json").read_text())
    candidate = EvalReport.model_validate_json((out / "eval_candidate.json").read_text())
    champion_before = current_champion()
    champ_report = champion_report()
    previous_hparams = _champion_hparams(champion_before, config)
    champion_after = promote(cycle) if result.promoted else champion_before
    assert champion_after is not None

    table = [TableRow.from_report("candidate", candidate), TableRow.from_report("champion", champ_report)]
    for baseline_path in sorted(cycle_dir(0).glob("eval_baseline_*.json")):
        baseline = EvalReport.model_validate_json(baseline_path.read_text())
        if baseline.data_hash == candidate.data_hash:
            table.append(TableRow.from_report(f"baseline {baseline.predictor}", baseline))

    decision_input = json.loads((out / "mcp_decision_input.json").read_text())
    snapshot_path = out / "mcp_eval_snapshot.json"
    calls = json.loads(snapshot_path.read_text()).get("calls", []) if snapshot_path.exists() else []
    sources = [
        ToolCallSummary(
            name=c["name"],
            arguments=c.get("arguments", {}),
            is_error=c.get("is_error", False),
            latency_ms=c.get("latency_ms", 0.0),
        )
        for c in calls
    ]
    runs_read = sorted({str(c["arguments"]["run_id"]) for c in calls if "run_id" in c.get("arguments", {})})
    record = DecisionRecord(
        cycle=cycle,
        started_at=started_at,
        finished_at=now_iso(),
        verdict="promoted" if result.promoted else "rejected",
        sources=sources,
        runs_read=runs_read,
        weak_dims=[
            WeakDim(
                dim=w["dim"],
                champion_mae=w["champion_mae"],
                baseline_mae=w["baseline_mae"],
                focus=w["dim"] in plan.focus_dims,
            )
            for w in decision_input["weak_dims"]
        ],
        learnability=[LearnabilitySlice.model_validate(s) for s in decision_input["learnability"]],
        plan=plan,
        hparam_patch=hparam_patch(previous_hparams, plan.hparams),
        augmentation=AugmentSummary.model_validate_json((out / "augment.json").read_text()),
        training=json.loads((out / "training.json").read_text()),
        table=table,
        gate=result,
        champion_after=champion_after,
    )
    write_decision(record, out)
    if result.promoted:
        evaluate_test_for_the_record(cycle, config)
    append_history(
        CycleHistoryEntry(
            cycle=cycle,
            status="promoted" if result.promoted else "rejected",
            description=_one_line(record),
            focus_dims=list(plan.focus_dims),
            hparams=plan.hparams,
            champion_mae=champ_report.vector_mae,
            candidate_mae=candidate.vector_mae,
            candidate_mae_rounded=candidate.vector_mae_rounded,
            gate_failed_checks=result.failed,
            wall_s=wall_s,
            started_at=started_at,
            finished_at=record.finished_at,
        )
    )
    return record


def _one_line(record: DecisionRecord) -> str:
    """The history table's description: what this cycle tried, in one line."""
    changes = ", ".join(f"{p.name} {p.before}->{p.after}" for p in record.hparam_patch) or "same recipe"
    return (
        f"focus {', '.join(record.plan.focus_dims)}; {changes}; "
        f"+{record.augmentation.n_kept} rows; {record.plan.planner}"
    )


def _champion_hparams(champion: ChampionRecord | None, config: LoopConfig) -> HParams:
    """The configuration the champion was trained with (the planner's defaults for the base model)."""
    from loop.config import DEFAULT_HPARAMS

    if champion is None or champion.cycle == 0:
        return DEFAULT_HPARAMS[config.student]
    return read_plan(champion.cycle).hparams


def evaluate_test_for_the_record(cycle: int, config: LoopConfig) -> None:
    """The test split (when the dataset has one) is scored and logged for the record only: nothing in the
    loop or the agent reads it."""
    from tools.student.interface import load_student
    from tools.tracking import log_evaluation

    data = dataset(config)
    if not data.test:
        return
    student = load_student(config.base_model, cycle_dir(cycle) / "candidate")
    decoder = student.default_decoder(config.decoder)
    report = evaluate(
        lambda texts: student.predict_batch(texts, decoder=decoder),
        data.test,
        predictor=f"cycle{cycle}-champion",
        decoder=decoder,
        dataset=f"{data.name}/test",
        batch_size=config.eval_batch_size,
        progress=False,
    )
    log_evaluation(
        report,
        name=f"cycle{cycle}-test-record",
        group=f"cycle_{cycle}",
        config={"role": "test_record", "cycle": cycle, "split": "test"},
    )
    atomic_write_json(cycle_entry(cycle) / "eval_test_record.json", report)
