"""What each action stage of a cycle does. The MCP action tools (tools/mcp_tools/actions.py) are thin
wrappers over these functions, so every stage of a cycle leaves a tools/call record.

Files of cycle N live in `artifacts/loop/cycle_N/` (names as in DESIGN §1). Each function reads what the
previous stage wrote there and writes its own output atomically, so a killed cycle resumes stage by stage.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

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
from loop.registry import (
    champion_report,
    current_champion,
    cycle_entry,
    metric_summary,
    promote,
    register_candidate,
)
from loop.state import now_iso
from tools.core.atomic import append_line, atomic_write_json
from tools.core.contracts import ChampionRecord, CycleHistoryEntry, CyclePlan, HParams, LearnabilitySlice
from tools.core.paths import cycle_dir, loop_dir
from tools.core.schema import DIMS, TrainingRow
from tools.data.dataset import DatasetSplits, load_dataset, load_jsonl, write_jsonl
from tools.evaluation.baselines import learnability
from tools.evaluation.harness import evaluate, evaluate_baselines
from tools.evaluation.metrics import EvalReport

CONFIG_FILE = "config.json"


def save_config(config: LoopConfig) -> None:
    atomic_write_json(loop_dir() / CONFIG_FILE, config)


def load_loop_config() -> LoopConfig:
    path = loop_dir() / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: start cycles with python -m loop.run")
    return LoopConfig.model_validate_json(path.read_text())


def dataset(config: LoopConfig) -> DatasetSplits:
    return load_dataset(config.data)


def valid_rows(config: LoopConfig, data: DatasetSplits) -> list[TrainingRow]:
    return data.valid[: config.max_eval_rows]


def read_plan(cycle: int) -> CyclePlan:
    return CyclePlan.model_validate_json((cycle_dir(cycle) / "plan.json").read_text())


def append_history(entry: CycleHistoryEntry) -> None:
    append_line(loop_dir() / "history.jsonl", entry.model_dump_json())
    _write_history_tsv()


def read_history() -> list[CycleHistoryEntry]:
    path = loop_dir() / "history.jsonl"
    if not path.exists():
        return []
    return [
        CycleHistoryEntry.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()
    ]


def _tsv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _write_history_tsv() -> None:
    """autoresearch-style results table: one line per cycle, crashed ones included."""
    from tools.core.atomic import atomic_write_text

    header = "cycle\tstatus\tchampion_mae\tcandidate_mae\tcandidate_rounded\tfocus\tdescription"
    lines = [header]
    for e in read_history():
        figures = (_tsv_number(x) for x in (e.champion_mae, e.candidate_mae, e.candidate_mae_rounded))
        lines.append("\t".join([str(e.cycle), e.status, *figures, ",".join(e.focus_dims), e.description]))
    atomic_write_text(loop_dir() / "history.tsv", "\n".join(lines) + "\n")


# --- cycle 0 -------------------------------------------------------------------------------------


def bootstrap_champion(config: LoopConfig) -> ChampionRecord:
    """Cycle 0: evaluate the untouched base model and the baselines on valid; the base becomes champion."""
    from tools.student.interface import load_student
    from tools.tracking import log_evaluation

    started = time.perf_counter()
    started_at = now_iso()
    data = dataset(config)
    rows = valid_rows(config, data)
    name = f"{data.name}/valid"
    for baseline in evaluate_baselines(data.train, rows, dataset=name):
        log_evaluation(
            baseline,
            name=f"baseline-{baseline.predictor}",
            group="cycle_0",
            config={"role": "baseline", "cycle": 0, "split": "valid", "predictor": baseline.predictor},
        )
        atomic_write_json(cycle_dir(0) / f"eval_baseline_{baseline.predictor}.json", baseline)
    student = load_student(config.base_model, None)
    report = evaluate(
        lambda texts: student.predict_batch(texts, decoder=config.decoder),
        rows,
        predictor=student.name,
        decoder=config.decoder,
        dataset=name,
        batch_size=config.eval_batch_size,
    )
    run_id = log_evaluation(
        report,
        name="cycle0-base",
        group="cycle_0",
        config={"role": "base", "cycle": 0, "split": "valid", "base_model": config.base_model},
    )
    atomic_write_json(cycle_dir(0) / "eval_candidate.json", report)
    register_candidate(0, None, report, base_model=config.base_model, eval_run_id=run_id)
    champion = promote(0)
    append_history(
        CycleHistoryEntry(
            cycle=0,
            status="baseline",
            description=f"base model {config.base_model} [{config.decoder}] evaluated; champion",
            candidate_mae=report.vector_mae,
            candidate_mae_rounded=report.vector_mae_rounded,
            wall_s=round(time.perf_counter() - started, 1),
            started_at=started_at,
            finished_at=now_iso(),
        )
    )
    return champion


# --- diagnose ------------------------------------------------------------------------------------


def cached_learnability(config: LoopConfig) -> list[LearnabilitySlice]:
    """Learnability of the training split (5-fold CV), computed once per dataset and seed."""
    data = dataset(config)
    cache = loop_dir() / f"learnability_{data.name.replace('/', '_')}_seed{config.seed}.json"
    if cache.exists():
        return [LearnabilitySlice.model_validate(s) for s in json.loads(cache.read_text())]
    slices = learnability(data.train, seed=config.seed)
    atomic_write_json(cache, [s.model_dump() for s in slices])
    return slices


def diagnose(cycle: int, config: LoopConfig) -> dict:
    """Weak dims (champion per-dim MAE vs the ridge baseline, failure concentration) and learnability."""
    slices = cached_learnability(config)
    champ = champion_report()
    ridge_path = cycle_dir(0) / "eval_baseline_tfidf-ridge.json"
    ridge = EvalReport.model_validate_json(ridge_path.read_text()) if ridge_path.exists() else None
    failures = champ.top_failures
    concentration = {
        d: sum(1 for f in failures if f.abs_error and f.abs_error[i] >= 2) for i, d in enumerate(DIMS)
    }
    weak = sorted(
        (
            {
                "dim": d,
                "champion_mae": champ.per_dim_mae.get(d),
                "baseline_mae": ridge.per_dim_mae.get(d) if ridge else None,
                "gap_to_baseline": (champ.per_dim_mae.get(d) or 0) - (ridge.per_dim_mae.get(d) or 0)
                if ridge
                else None,
                "failures_off_by_2_plus": concentration[d],
                "learnable_slices": [s.source_type for s in slices if s.dim == d and s.learnable],
            }
            for d in DIMS
        ),
        key=lambda w: -(w["champion_mae"] or 0),
    )
    decision_input = {"cycle": cycle, "weak_dims": weak, "learnability": [s.model_dump() for s in slices]}
    atomic_write_json(cycle_dir(cycle) / "mcp_decision_input.json", decision_input)
    return decision_input


# --- augment -------------------------------------------------------------------------------------


def champion_train_rows(config: LoopConfig, data: DatasetSplits) -> list[TrainingRow]:
    """The training set the champion was trained on (the base split for the base model)."""
    champion = current_champion()
    if champion is not None and champion.cycle > 0:
        path = cycle_dir(champion.cycle) / f"train.cycle_{champion.cycle}.jsonl"
        if path.exists():
            return load_jsonl(path)
    return list(data.train)


def augment(cycle: int, config: LoopConfig) -> AugmentSummary:
    """Teacher pairs for the focus dims + hard-case replay of the champion's worst TRAIN rows, filtered."""
    from tools.data.filters import filter_augmented
    from tools.data.replay import hard_case_replay
    from tools.data.teacher import make_teacher
    from tools.student.interface import load_student

    plan = read_plan(cycle)
    data = dataset(config)
    base_train = champion_train_rows(config, data)
    teacher = make_teacher(config)
    generated: list[TrainingRow] = []
    if teacher is not None:
        generated = teacher.generate(
            plan.augmentation, list(plan.focus_dims), plan.augmentation.new_pairs, config.seed + cycle
        )

    n_replay = round(plan.augmentation.new_pairs * plan.augmentation.replay_ratio)
    replay: list[TrainingRow] = []
    if n_replay:
        champion = current_champion()
        sample = random.Random(config.seed + cycle).sample(
            base_train, min(config.replay_sample_rows, len(base_train))
        )
        student = load_student(
            config.base_model, Path(champion.student_path) if champion and champion.student_path else None
        )
        decoder = student.default_decoder(config.decoder)
        train_report = evaluate(
            lambda texts: student.predict_batch(texts, decoder=decoder),
            sample,
            predictor=student.name,
            decoder=decoder,
            dataset=f"{data.name}/train-sample",
            batch_size=config.eval_batch_size,
        )
        worst = sorted((r for r in train_report.rows if r.scored), key=lambda r: -(r.mae or 0))
        replay = hard_case_replay(
            worst, n_replay, seed=config.seed + cycle, protected={"valid": data.valid, "test": data.test}
        )
    kept, report = filter_augmented(
        generated + replay, train=base_train, protected={"valid": data.valid, "test": data.test}
    )
    out = cycle_dir(cycle)
    write_jsonl(out / "generated_augmented_pairs.jsonl", kept)
    train_rows = base_train + kept
    if config.max_train_rows and len(train_rows) > config.max_train_rows:
        # A deterministic sample keeps the mix of original and new rows (smoke runs only).
        train_rows = random.Random(config.seed + cycle).sample(train_rows, config.max_train_rows)
    write_jsonl(out / f"train.cycle_{cycle}.jsonl", train_rows)
    summary = AugmentSummary(
        teacher="none (replay only)" if teacher is None else teacher.name,
        n_generated=len(generated),
        n_replay=len(replay),
        n_kept=len(kept),
        train_rows=len(train_rows),
        dropped=dict(report.dropped),
        leaked_against_protected=report.leaked_against_protected,
    )
    atomic_write_json(out / "filter_report.json", report)
    atomic_write_json(out / "augment.json", summary)
    return summary


# --- train ---------------------------------------------------------------------------------------


def train(cycle: int, config: LoopConfig) -> dict:
    """Train the candidate from the base model on the cycle's training set (resumes from checkpoints)."""
    from tools.student.interface import train_student
    from tools.tracking import start_training_run

    plan = read_plan(cycle)
    out = cycle_dir(cycle)
    rows = load_jsonl(out / f"train.cycle_{cycle}.jsonl")
    run = start_training_run(
        name=f"cycle{cycle}-train",
        group=f"cycle_{cycle}",
        config={
            "cycle": cycle,
            "student": config.student,
            "base_model": config.base_model,
            **plan.hparams.model_dump(),
            "train_rows": len(rows),
        },
    )
    result = train_student(
        config.student,
        plan.hparams,
        rows,
        base_spec=config.base_model,
        output_dir=out / "candidate",
        seed=config.seed + cycle,
        time_budget_s=config.train_time_budget_s,
        checkpoint_every_steps=config.checkpoint_every_steps,
        options=config.student_options,
        on_step=run.log_step,
    )
    summary = result.model_dump(mode="json")
    summary["wandb_run_id"] = run.finish(
        {f"train/{k}": v for k, v in summary.items() if isinstance(v, int | float)}
    )
    atomic_write_json(out / "training.json", summary)
    return summary


# --- evaluate ------------------------------------------------------------------------------------


def evaluate_candidate(cycle: int, config: LoopConfig) -> dict:
    """Candidate on the frozen validation rows; logged to W&B + Weave; registered in the registry."""
    from tools.student.interface import load_student
    from tools.tracking import log_evaluation

    data = dataset(config)
    rows = valid_rows(config, data)
    student_dir = cycle_dir(cycle) / "candidate"
    student = load_student(config.base_model, student_dir)
    decoder = student.default_decoder(config.decoder)
    report = evaluate(
        lambda texts: student.predict_batch(texts, decoder=decoder),
        rows,
        predictor=f"cycle{cycle}-candidate",
        decoder=decoder,
        dataset=f"{data.name}/valid",
        batch_size=config.eval_batch_size,
    )
    # p95 latency is a per-request figure: measure single requests, not batch shares.
    report = report.model_copy(update=single_request_latency(student, decoder, rows))
    run_id = log_evaluation(
        report,
        name=f"cycle{cycle}-candidate",
        group=f"cycle_{cycle}",
        config={"role": "candidate", "cycle": cycle, "split": "valid", "student": config.student},
    )
    atomic_write_json(cycle_dir(cycle) / "eval_candidate.json", report)
    register_candidate(cycle, student_dir, report, base_model=config.base_model, eval_run_id=run_id)
    return {"eval_run_id": run_id, **metric_summary(report).model_dump()}


def single_request_latency(student: object, decoder: str, rows: list[TrainingRow], n: int = 20) -> dict:
    import numpy as np

    latencies = [student.predict_one(r.request_text, decoder=decoder).latency_ms for r in rows[:n]]  # type: ignore[attr-defined]
    return {
        "p50_latency_ms": float(np.percentile(latencies, 50)),
        "p95_latency_ms": float(np.percentile(latencies, 95)),
    }


# --- gate ----------------------------------------------------------------------------------------


def gate(cycle: int, config: LoopConfig) -> GateResult:
    champion = champion_report()
    candidate = EvalReport.model_validate_json((cycle_dir(cycle) / "eval_candidate.json").read_text())
    constant_path = cycle_dir(0) / "eval_baseline_train-median.json"
    constant = EvalReport.model_validate_json(constant_path.read_text()) if constant_path.exists() else None
    result = run_gate(champion, candidate, list(read_plan(cycle).focus_dims), config.gate, constant=constant)
    atomic_write_json(cycle_dir(cycle) / "gate.json", result)
    return result


# --- log -----------------------------------------------------------------------------------------


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
