"""The confirm stage draws the winner's recipe again, really trained (tiny random model, Ray tasks): with the
loop's settings and seeds the first draw never used. A confirmation on the same seeds would re-run the first
draw exactly and always pass."""

from __future__ import annotations

import pytest
from test_gate import uniform
from test_parallel_members import HPARAMS, RECIPE, ROWS

from loop.config import LoopConfig
from loop.gate import GateConfig, gate_candidates
from loop.registry import champion_report, current_champion, promote, register_candidate
from loop.stages.augment import TRAIN_FILE
from loop.stages.candidate import CONFIRM_DIR, CONFIRM_SEED_OFFSET, training_outcome
from loop.stages.decide import GATE_FILE, confirm
from loop.stages.inputs import candidate_dir, save_config
from tools.core.atomic import atomic_write_json
from tools.core.contracts import AugmentationSpec, CandidateSpec, CyclePlan
from tools.core.paths import cycle_dir
from tools.data.dataset import write_jsonl
from tools.student.ensemble import member_seed
from tools.tracking.store import open_store

COMMON = {"base_model": "bundled", "decoder": "regression", "recipe": None, "eval_run_id": None}
SPEC = CandidateSpec(
    name="lm-stack",
    reason="the winner",
    focus_dims=["energy"],
    augmentation=AugmentationSpec(teacher_pairs=0, replay_rows=0),
    student=RECIPE.model_copy(update={"folds": 2}),
    hparams=HPARAMS,
    seed=10,
)


@pytest.fixture
def config(tmp_path, monkeypatch, tiny_base_model) -> LoopConfig:
    """Cycle 1 after its gate: the LM stack won against the cycle-0 train-median champion."""
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", ROWS[:16])
    write_jsonl(data / "valid.jsonl", ROWS[16:])
    write_jsonl(candidate_dir(1, SPEC.name) / TRAIN_FILE, ROWS[:16])
    register_candidate(0, "train-median", None, uniform(1.0), **COMMON)
    promote(0, "train-median")
    atomic_write_json(cycle_dir(1) / "plan.json", CyclePlan(cycle=1, candidates=[SPEC], reasons={"f": "e"}))
    gated = gate_candidates(
        current_champion(),
        champion_report(),
        {SPEC.name: uniform(0.5)},
        {SPEC.name: ["energy"]},
        GateConfig(),
        {},
    )
    assert gated.winner == SPEC.name
    atomic_write_json(cycle_dir(1) / GATE_FILE, gated)
    loop_config = LoopConfig(data=str(data), base_model=str(tiny_base_model), latency_requests=1)
    save_config(loop_config)  # what loop.run writes first: the training tasks read it
    return loop_config


def test_the_second_draw_trains_the_winners_recipe_with_the_loops_settings_on_other_seeds(config):
    result = confirm(1, config)

    second = training_outcome(1, SPEC.name, CONFIRM_DIR)
    assert second is not None and second.status == "trained", second
    seed = SPEC.seed + CONFIRM_SEED_OFFSET
    assert [(m.fold, m.seed) for m in second.result.members] == [
        (0, member_seed(seed, 0)),
        (1, member_seed(seed, 1)),
    ]
    run = open_store().get_run(second.wandb_run_id)  # the second draw's training, told apart in W&B
    assert (run.name, run.group, run.config["cycle"]) == (
        f"cycle1-{SPEC.name}-{CONFIRM_DIR}-train",
        "cycle_1",
        1,
    )
    assert result.confirm is not None and result.confirm_note.startswith(f"seeds +{CONFIRM_SEED_OFFSET}: ")
