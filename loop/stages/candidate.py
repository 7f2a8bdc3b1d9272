"""Train and evaluate stages: the cycle's K candidates trained in parallel (Ray tasks), then each scored on
the frozen validation rows and registered.

Per candidate, `artifacts/loop/cycle_N/candidates/NAME/` holds `train.jsonl` (augment stage), `student/`
(its folder, see `tools.student.recipes`), `training.json` (`TrainingOutcome`: trained, pruned, crashed or
not trained) and `eval_valid.json`. A candidate with `training.json` is never trained again: `--resume`
after a kill trains only the unfinished ones (and those skip their finished LM members).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, RootModel

from loop.config import LoopConfig
from loop.heartbeat import ProgressWriter, progress_line
from loop.registry import champion_oof, current_champion, register_candidate
from loop.stages.augment import TRAIN_FILE
from loop.stages.inputs import candidate_dir, dataset, load_loop_config, read_plan, valid_rows
from loop.stages.scoring import cv_report, evaluate_student, log_cv, log_valid
from tools.core.atomic import atomic_write_json
from tools.core.contracts import CandidateSpec
from tools.data.dataset import load_jsonl
from tools.evaluation.harness import evaluate
from tools.evaluation.metrics import EvalReport
from tools.student.ensemble import member_done
from tools.student.recipes import (
    Pruner,
    RecipeResult,
    member_folder,
    peak_rss_mb,
    train_recipe,
    train_recipe_member,
)

TRAINING_FILE = "training.json"
EVALUATION_FILE = "evaluation.json"
STUDENT_DIR = "student"
CONFIRM_DIR = "confirm"
CONFIRM_SEED_OFFSET = 1000
MEMBER_KEY = "member_"  # task keys: NAME (a candidate without LM) or NAME/member_K (one of its LM members)

TrainingStatus = Literal["trained", "pruned", "crashed", "not_trained"]


class TrainingOutcome(BaseModel):
    status: TrainingStatus
    result: RecipeResult | None = None
    error: str | None = None
    wandb_run_id: str | None = None

    @property
    def note(self) -> str:
        if self.status == "pruned" and self.result is not None:
            return self.result.pruned or ""
        if self.status == "not_trained":
            return "the time budget ended before any training step"
        return self.error or ""


class CandidateEvaluation(BaseModel):
    """A candidate on valid: its report's run ids and the spread of its seeds (the fold ensemble's members)."""

    eval_run_id: str
    cv_run_id: str | None
    member_valid_mae: list[float]


class TrainSummary(BaseModel):
    """One candidate after the train stage: its status, its CV estimate (out-of-fold on train), why not."""

    status: TrainingStatus
    cv_mae: float | None
    cv_mae_rounded: float | None
    note: str


class TrainResults(RootModel[dict[str, TrainSummary]]):
    """The train stage's reply, per candidate of the plan."""


class EvaluationSummary(BaseModel):
    """One trained candidate on the frozen validation rows, and the spread of its seeds."""

    vector_mae: float | None
    vector_mae_rounded: float | None
    p95_latency_ms: float
    member_valid_mae: list[float]


class EvaluationResults(RootModel[dict[str, EvaluationSummary]]):
    """The evaluate stage's reply, per trained candidate."""


def training_outcome(cycle: int, name: str, folder: str = "") -> TrainingOutcome | None:
    path = candidate_dir(cycle, name) / folder / TRAINING_FILE
    return TrainingOutcome.model_validate_json(path.read_text()) if path.is_file() else None


def training_seed(spec: CandidateSpec, seed_offset: int) -> int:
    """The seed a training run of `spec` starts from; the confirmation's offset gives it other seeds."""
    return spec.seed + seed_offset


def _pruner(config: LoopConfig, seed_offset: int) -> Pruner | None:
    """Only a first draw is pruned against the champion; a confirmation draw is trained in full."""
    if seed_offset != 0:
        return None
    return Pruner(
        champion_oof(current_champion()),
        rounded=config.gate.metric == "vector_mae_rounded",
        confidence=config.gate.prune_confidence,
        samples=config.gate.bootstrap_samples,
        seed=config.gate.seed,
    )


def train_candidate_task(
    cycle: int, name: str, seed_offset: int, folder: str, fold: int | None = None
) -> dict[str, Any]:
    """In a Ray worker: one LM member of the candidate (`fold`), or the whole candidate when it has none."""
    config = load_loop_config()
    spec = read_plan(cycle).candidate(name)
    root = candidate_dir(cycle, name)
    rows = load_jsonl(root / TRAIN_FILE)
    steps: list[dict] = []
    writers: dict[int, ProgressWriter] = {}

    def on_step(metrics: dict) -> None:
        steps.append(metrics)
        member = int(metrics.get("member", 0))
        writers.setdefault(member, ProgressWriter(root / folder, member))(metrics)

    common: dict[str, Any] = {
        "base_spec": config.base_model,
        "output_dir": root / folder / STUDENT_DIR,
        "seed": training_seed(spec, seed_offset),
        "time_budget_s": config.train_time_budget_s,
        "checkpoint_every_steps": config.checkpoint_every_steps,
        "on_step": on_step,
        "progress": False,
    }
    if fold is not None:
        record = train_recipe_member(spec.student, spec.hparams, rows, fold=fold, **common)
        return {"member": record.model_dump(mode="json"), "steps": steps, "peak_rss_mb": peak_rss_mb()}
    result = train_recipe(spec.student, spec.hparams, rows, pruner=_pruner(config, seed_offset), **common)
    assert result is not None, "a candidate trained in one task is always decided"
    return {"result": result.model_dump(mode="json"), "steps": steps}


def _assemble(
    cycle: int, spec: CandidateSpec, config: LoopConfig, seed_offset: int, folder: str
) -> RecipeResult | None:
    """The candidate from the members its parallel tasks finished so far (None: not decidable yet)."""
    root = candidate_dir(cycle, spec.name)
    return train_recipe(
        spec.student,
        spec.hparams,
        load_jsonl(root / TRAIN_FILE),
        base_spec=config.base_model,
        output_dir=root / folder / STUDENT_DIR,
        seed=training_seed(spec, seed_offset),
        pruner=_pruner(config, seed_offset),
        progress=False,
        train_members=False,
    )


def _log_training(
    cycle: int, spec: CandidateSpec, folder: str, steps: list[dict], result: RecipeResult
) -> str:
    from tools.tracking import start_training_run

    run = start_training_run(
        name=f"cycle{cycle}-{spec.name}{'-' + folder if folder else ''}-train",
        group=f"cycle_{cycle}",
        config={
            "cycle": cycle,
            "candidate": spec.name,
            "student": spec.student.label(),
            **spec.hparams.model_dump(),
            "seed": spec.seed,
        },
    )
    for index, step in enumerate(steps, start=1):
        run.log_step({**step, "step": index})
    summary = {"cv_mae": result.cv_mae, "cv_mae_rounded": result.cv_mae_rounded, "wall_s": result.wall_s}
    return run.finish({f"train/{k}": v for k, v in summary.items() if v is not None})


def _record(cycle: int, spec: CandidateSpec, folder: str, outcome: Any) -> TrainingOutcome:
    from loop.parallel import TaskFailure

    if isinstance(outcome, TaskFailure):
        record = TrainingOutcome(status="crashed", error=f"{outcome.kind}: {outcome.message}")
    else:
        result = RecipeResult.model_validate(outcome["result"])
        status: TrainingStatus = (
            "pruned" if result.pruned else "not_trained" if result.not_trained else "trained"
        )
        record = TrainingOutcome(
            status=status,
            result=result,
            wandb_run_id=_log_training(cycle, spec, folder, outcome["steps"], result),
        )
    atomic_write_json(candidate_dir(cycle, spec.name) / folder / TRAINING_FILE, record)
    return record


def submission_order(tasks: dict[str, tuple]) -> dict[str, tuple]:
    """Whole candidates (no LM: seconds each) before LM members, each group in plan and fold order: Ray
    starts tasks in the order they are submitted, so a cheap candidate never queues behind minutes of LM
    members for a CPU."""
    return dict(sorted(tasks.items(), key=lambda item: f"/{MEMBER_KEY}" in item[0]))


def train_specs(
    cycle: int, specs: list[CandidateSpec], config: LoopConfig, *, seed_offset: int = 0, folder: str = ""
) -> dict[str, TrainingOutcome]:
    """Train `specs` as parallel Ray tasks, one per LM member (a candidate without LM is one task); each
    outcome is written the moment it is decided. After each member, the candidate is judged on the members
    finished so far, in fold order (the same pruning decisions as training them one after another): once
    pruned, complete or crashed, its remaining members are cancelled; the other candidates go on."""
    from loop.parallel import TaskFailure, run_tasks

    began = time.perf_counter()
    outcomes = {s.name: o for s in specs if (o := training_outcome(cycle, s.name, folder)) is not None}
    pending = {s.name: s for s in specs if s.name not in outcomes}
    tasks: dict[str, tuple] = {}
    member_steps: dict[str, dict[int, list[dict]]] = {name: {} for name in pending}
    member_rss: dict[str, list[float]] = {name: [] for name in pending}

    def decide(name: str) -> bool:
        """Record the candidate if its finished members decide it; True when decided."""
        spec = pending[name]
        try:
            result = _assemble(cycle, spec, config, seed_offset, folder)
        except Exception as error:  # assembling is the candidate's own failure, not the stage's
            outcomes[name] = _record(
                cycle, spec, folder, TaskFailure(kind=type(error).__name__, message=str(error))
            )
            return True
        if result is None:
            return False
        result = result.model_copy(
            update={
                "wall_s": time.perf_counter() - began,
                "peak_rss_mb": max(member_rss[name], default=result.peak_rss_mb),
            }
        )
        steps = [step for fold in sorted(member_steps[name]) for step in member_steps[name][fold]]
        outcomes[name] = _record(
            cycle, spec, folder, {"result": result.model_dump(mode="json"), "steps": steps}
        )
        return True

    for name, spec in pending.items():
        if not spec.student.uses_lm:
            tasks[name] = (cycle, name, seed_offset, folder, None)
            continue
        ensemble_dir = member_folder(spec.student, candidate_dir(cycle, name) / folder / STUDENT_DIR)
        missing = [f for f in range(spec.student.folds) if not member_done(ensemble_dir, f)]
        # A resumed run decides from the members already on disk first (it may need no task at all).
        if len(missing) < spec.student.folds and decide(name):
            continue
        tasks.update({f"{name}/{MEMBER_KEY}{f}": (cycle, name, seed_offset, folder, f) for f in missing})

    tasks = submission_order(tasks)

    def members_of(name: str) -> list[str]:
        return [key for key in tasks if key.startswith(f"{name}/{MEMBER_KEY}")]

    def on_done(key: str, outcome: Any) -> list[str]:
        name, _, member = key.partition(f"/{MEMBER_KEY}")
        if name in outcomes:
            return []
        if not member or isinstance(outcome, TaskFailure):
            # A whole candidate's result, or a member that crashed: that candidate's outcome (only its).
            outcomes[name] = _record(cycle, pending[name], folder, outcome)
            return members_of(name)
        member_steps[name][int(member)] = outcome["steps"]
        member_rss[name].append(outcome["peak_rss_mb"])
        return members_of(name) if decide(name) else []

    def heartbeat(running: list[str]) -> list[str]:
        lines = []
        for key in running:
            name, _, member = key.partition(f"/{MEMBER_KEY}")
            folder_path = candidate_dir(cycle, name) / folder
            lines.append(progress_line(key, folder_path, int(member) if member else None))
        return lines

    if tasks:
        run_tasks(
            train_candidate_task,
            tasks,
            cpus_per_task=config.cpus_per_candidate if seed_offset == 0 else config.confirm_cpus,
            address=config.ray_address,
            on_done=on_done,
            heartbeat=heartbeat,
        )
    for name, spec in pending.items():
        if name not in outcomes:  # every member returned, yet the candidate could not be assembled
            failure = TaskFailure(kind="IncompleteEnsemble", message="a member's record is missing")
            outcomes[name] = _record(cycle, spec, folder, failure)
    return {s.name: outcomes[s.name] for s in specs}


def train(cycle: int, config: LoopConfig) -> TrainResults:
    """Every candidate of the plan (finished ones are not trained again)."""
    outcomes = train_specs(cycle, read_plan(cycle).candidates, config)
    return TrainResults(
        {
            name: TrainSummary(
                status=o.status,
                cv_mae=o.result.cv_mae if o.result else None,
                cv_mae_rounded=o.result.cv_mae_rounded if o.result else None,
                note=o.note,
            )
            for name, o in outcomes.items()
        }
    )


def seed_members(student: Any) -> list[Any]:
    """The fold ensemble's members inside a student (its own, or a stack's LM component), if any."""
    from tools.student.ensemble import EnsembleStudent
    from tools.student.stack import LM_COMPONENT, StackStudent

    if isinstance(student, StackStudent):
        student = student.components.get(LM_COMPONENT)
    return list(student.members) if isinstance(student, EnsembleStudent) else []


def evaluate_folder(
    cycle: int, spec: CandidateSpec, config: LoopConfig, folder: str = ""
) -> tuple[EvalReport, CandidateEvaluation]:
    """Score a trained candidate's student on valid (with its members' spread) and log it."""
    from tools.student.interface import load_student

    data = dataset(config)
    rows = valid_rows(config, data)
    student_dir = candidate_dir(cycle, spec.name) / folder / STUDENT_DIR
    student = load_student(config.base_model, student_dir)
    label = f"{spec.name}{'-' + folder if folder else ''}"
    champion = current_champion()
    # Timed interleaved with the champion in the same window; not with the zero-shot base model, whose
    # generation would take minutes of timing for a figure no gate reads.
    reference = (
        (load_student(config.base_model, champion.student_dir()), champion.decoder)
        if champion is not None and champion.student_path is not None
        else None
    )
    report = evaluate_student(
        student,
        rows,
        predictor=f"cycle{cycle}-{label}",
        dataset=f"{data.name}/valid",
        config=config,
        champion=reference,
    )
    member_mae = [
        evaluate(
            lambda texts, m=member: m.predict_batch(texts, decoder=m.default_decoder("skeleton_ev")),
            rows,
            predictor=f"{label}-member{i}",
            decoder="member",
            dataset=report.dataset,
            progress=False,
        ).vector_mae
        for i, member in enumerate(seed_members(student))
    ]
    extra = {"student": spec.student.label(), "recipe_key": spec.recipe_key()}
    run_id = log_valid(report, cycle=cycle, name=label, role="candidate", extra=extra)
    cv_run = log_cv(
        cv_report(student_dir, data.train, predictor=f"cycle{cycle}-{label}", dataset=data.name),
        cycle=cycle,
        name=label,
        role="candidate",
        extra=extra,
    )
    evaluation = CandidateEvaluation(
        eval_run_id=run_id, cv_run_id=cv_run, member_valid_mae=[m for m in member_mae if m is not None]
    )
    out = candidate_dir(cycle, spec.name) / folder
    atomic_write_json(out / "eval_valid.json", report)
    atomic_write_json(out / EVALUATION_FILE, evaluation)
    return report, evaluation


def read_evaluation(cycle: int, name: str, folder: str = "") -> tuple[EvalReport, CandidateEvaluation] | None:
    out = candidate_dir(cycle, name) / folder
    if not (out / EVALUATION_FILE).is_file():
        return None
    return (
        EvalReport.model_validate_json((out / "eval_valid.json").read_text()),
        CandidateEvaluation.model_validate_json((out / EVALUATION_FILE).read_text()),
    )


def evaluate_candidates(cycle: int, config: LoopConfig) -> EvaluationResults:
    """Every trained candidate on the frozen validation rows; registered in the registry."""
    data = dataset(config)
    summaries = {}
    for spec in read_plan(cycle).candidates:
        outcome = training_outcome(cycle, spec.name)
        if outcome is None or outcome.status != "trained":
            continue
        done = read_evaluation(cycle, spec.name)
        report, evaluation = done if done else evaluate_folder(cycle, spec, config)
        student_dir: Path = candidate_dir(cycle, spec.name) / STUDENT_DIR
        register_candidate(
            cycle,
            spec.name,
            student_dir,
            report,
            base_model=config.base_model,
            decoder=report.decoder,
            recipe=spec.student,
            hparams=spec.hparams,
            eval_run_id=evaluation.eval_run_id,
            cv=cv_report(student_dir, data.train, predictor=spec.name, dataset=data.name),
        )
        summaries[spec.name] = EvaluationSummary(
            vector_mae=report.vector_mae,
            vector_mae_rounded=report.vector_mae_rounded,
            p95_latency_ms=report.p95_latency_ms,
            member_valid_mae=evaluation.member_valid_mae,
        )
    return EvaluationResults(summaries)
