"""The offline planner over real MCP sessions: recorded evidence in, specific dims and hparams out."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent_fixture_server import Fixture, build_server, cycle_entry, failure, metrics

from agent.mcp_client import McpEndpoint, child_environment, open_session
from agent.offline_planner import OfflinePlanner
from agent.planner import PlanningContext
from tools.core.contracts import CyclePlan, EvalSnapshot, HParams, LearnabilitySlice

FIXTURE_SERVER = Path(__file__).with_name("agent_fixture_server.py")
FLAT = [0.8] * 6


def snapshot(
    champion_per_dim: list[float] = FLAT,
    baseline_per_dim: list[float] | None = None,
    failures: list | None = None,
    json_valid_rate: float = 1.0,
) -> EvalSnapshot:
    return EvalSnapshot(
        champion=None,
        base_metrics=metrics([1.0] * 6),
        champion_metrics=metrics(champion_per_dim, json_valid_rate=json_valid_rate),
        top_failures=failures or [],
        baselines={"train-median": metrics(baseline_per_dim or [1.0] * 6)},
    )


def plan_for(fixture: Fixture, cycle: int = 5, context: PlanningContext | None = None) -> CyclePlan:
    async def go() -> CyclePlan:
        async with open_session(build_server(fixture)) as session:
            return await OfflinePlanner().plan(session, cycle, context or PlanningContext())

    return asyncio.run(go())


def test_focus_is_the_dim_worst_relative_to_the_constant_baseline_not_in_absolute_terms() -> None:
    # energy has the largest MAE, but the constant baseline is even worse there; warmth is not learnt at all.
    plan = plan_for(
        Fixture(
            snapshot=snapshot([1.2, 0.6, 0.5, 0.5, 0.5, 0.5], baseline_per_dim=[2.0, 0.6, 1.0, 1.0, 1.0, 1.0])
        )
    )
    assert plan.focus_dims == ["warmth"]
    assert plan.reasons["focus_dims"].startswith("highest MAE / train-median MAE: warmth 1.00")


def test_equal_relative_errors_are_ranked_by_failure_concentration() -> None:
    failures = [
        failure([5, 5, 5, 5, 5, 10], [5, 5, 5, 5, 5, 5]),
        failure([5, 5, 5, 5, 5, 0], [5, 5, 5, 5, 5, 5]),
    ]
    plan = plan_for(Fixture(snapshot=snapshot([0.5, 0.5, 1.2, 0.5, 0.5, 1.2], failures=failures)))
    assert plan.focus_dims == ["nostalgia", "brightness"]
    assert plan.augmentation.target_buckets["nostalgia"] == [0, 10]
    assert plan.augmentation.target_buckets["brightness"] == [0, 1, 2, 8, 9, 10]


def test_up_to_three_dims_within_ten_percent_of_the_worst_are_chosen() -> None:
    plan = plan_for(Fixture(snapshot=snapshot([1.30, 1.25, 1.21, 1.20, 0.5, 0.5])))
    assert plan.focus_dims == ["energy", "warmth", "brightness"]


def test_dims_the_learnability_slices_call_unlearnable_are_skipped() -> None:
    slices = [
        LearnabilitySlice(
            source_type=s, dim="energy", n_rows=40, constant_mae=1.0, model_mae=1.0, learnable=False
        )
        for s in ("rule_prompt", "request_text")
    ] + [
        LearnabilitySlice(
            source_type="request_text",
            dim="acousticness",
            n_rows=40,
            constant_mae=1.0,
            model_mae=0.7,
            learnable=True,
        )
    ]
    fixture = Fixture(snapshot=snapshot([1.5, 0.5, 0.5, 1.1, 0.5, 0.5]), learnability=slices)
    plan = plan_for(fixture)
    assert plan.focus_dims == ["acousticness"]
    assert "skipped unlearnable energy" in plan.reasons["focus_dims"]


def test_a_failing_learnability_tool_is_recorded_and_planning_goes_on_without_it() -> None:
    fixture = Fixture(
        snapshot=snapshot([1.5, 0.5, 0.5, 1.1, 0.5, 0.5]), learnability_error="no loop config yet"
    )

    async def go() -> tuple[CyclePlan, list]:
        async with open_session(build_server(fixture)) as session:
            plan = await OfflinePlanner().plan(session, 1, PlanningContext())
            return plan, session.transcript.tool_calls

    plan, calls = asyncio.run(go())
    assert plan.focus_dims == ["energy"]
    assert calls[-1].name == "get_learnability_tool" and calls[-1].is_error
    assert "no loop config yet" in calls[-1].error


def test_a_candidate_worse_than_the_champion_lowers_the_learning_rate_and_is_never_repeated() -> None:
    rejected = HParams(learning_rate=2e-4, lora_r=16, lora_alpha=32, epochs=1.0)
    history = [
        cycle_entry(0, "baseline"),
        cycle_entry(1, "rejected", rejected, champion_mae=0.85, candidate_mae=0.95),
    ]
    plan = plan_for(Fixture(snapshot=snapshot(), history=history), cycle=2)
    assert plan.hparams.learning_rate == 1e-4
    assert plan.hparams != rejected
    assert "halve lr" in plan.reasons["learning_rate"]


def test_a_close_rejection_adds_an_epoch_at_the_same_learning_rate() -> None:
    rejected = HParams(learning_rate=3e-4, epochs=1.0)
    history = [cycle_entry(1, "rejected", rejected, champion_mae=0.85, candidate_mae=0.86)]
    plan = plan_for(Fixture(snapshot=snapshot(), history=history), cycle=2)
    assert plan.hparams.learning_rate == 3e-4 and plan.hparams.epochs == 2.0
    assert "underfit" in plan.reasons["epochs"]


def test_low_json_validity_applies_the_original_rule_lr_times_point_six_and_one_more_epoch() -> None:
    plan = plan_for(Fixture(snapshot=snapshot(json_valid_rate=0.9)), cycle=1)
    assert plan.hparams.learning_rate == 1.2e-4 and plan.hparams.epochs == 2.0
    assert "0.900 < 0.98" in plan.reasons["json_validity"]


def test_two_rejections_in_a_row_raise_the_lora_rank() -> None:
    history = [
        cycle_entry(1, "rejected", HParams(learning_rate=2e-4), champion_mae=0.85, candidate_mae=0.86),
        cycle_entry(
            2, "rejected", HParams(learning_rate=2e-4, epochs=2.0), champion_mae=0.85, candidate_mae=0.86
        ),
    ]
    plan = plan_for(Fixture(snapshot=snapshot(), history=history), cycle=3)
    assert (plan.hparams.lora_r, plan.hparams.lora_alpha, plan.hparams.epochs) == (32, 64, 3.0)


def test_a_champion_no_better_than_the_constant_raises_the_rank() -> None:
    plan = plan_for(Fixture(snapshot=snapshot([1.0] * 6)), cycle=1)
    assert plan.hparams.lora_r == 32 and "train-median" in plan.reasons["lora_r"]


def test_rules_that_land_on_an_already_rejected_configuration_move_off_it() -> None:
    at_1e4 = HParams(learning_rate=1e-4, lora_r=32, lora_alpha=64, epochs=2.0)
    at_2e4 = at_1e4.model_copy(update={"learning_rate": 2e-4})
    history = [
        cycle_entry(1, "rejected", at_1e4, champion_mae=0.85, candidate_mae=0.95),
        cycle_entry(2, "rejected", at_2e4, champion_mae=0.85, candidate_mae=0.95),
    ]
    plan = plan_for(Fixture(snapshot=snapshot(), history=history), cycle=3)
    assert plan.hparams not in (at_1e4, at_2e4)
    assert plan.hparams.learning_rate == 5e-5
    assert plan.reasons["no_repeat"].startswith("identical to rejected cycle 1 → lr x0.5")


def test_a_crash_halves_the_batch_and_doubles_accumulation() -> None:
    history = [cycle_entry(1, "crashed", HParams(batch_size=16, grad_accum=1))]
    plan = plan_for(Fixture(snapshot=snapshot(), history=history), cycle=2)
    assert (plan.hparams.batch_size, plan.hparams.grad_accum) == (8, 2)


def test_a_promoted_recipe_is_kept() -> None:
    winner = HParams(learning_rate=4e-4, lora_r=8, lora_alpha=16, epochs=2.0)
    history = [cycle_entry(1, "promoted", winner, champion_mae=0.9, candidate_mae=0.8)]
    plan = plan_for(Fixture(snapshot=snapshot(), history=history), cycle=2)
    assert plan.hparams == winner and plan.reasons["hparams"] == "start from cycle 1 (promoted)"


def test_augmentation_grows_with_the_number_of_hard_failures() -> None:
    hard = [failure([0, 10, 0, 10, 0, 10], [5] * 6) for _ in range(4)]
    mild = [failure([6, 5, 5, 5, 5, 5], [5] * 6)]
    many = plan_for(Fixture(snapshot=snapshot(failures=hard + mild)))
    none = plan_for(Fixture(snapshot=snapshot(failures=mild)))
    assert (many.augmentation.new_pairs, many.augmentation.replay_ratio) == (180, 0.22)
    assert (none.augmentation.new_pairs, none.augmentation.replay_ratio) == (60, 0.1)
    assert "4 hard failures of 5" in many.reasons["augmentation"]


def test_the_same_evidence_gives_the_same_plan_and_no_clips() -> None:
    fixture = Fixture(snapshot=snapshot([0.9, 0.7, 1.1, 0.8, 0.8, 0.8]))
    first, second = plan_for(fixture), plan_for(fixture)
    assert first == second and first.clipped == [] and first.fallback_reason is None


def test_over_stdio_the_planner_reads_the_same_evidence_and_decides_the_same(tmp_path: Path) -> None:
    rejected = HParams(learning_rate=2e-4)
    fixture = Fixture(
        snapshot=snapshot([0.8, 0.8, 0.8, 1.4, 0.8, 0.8]),
        history=[cycle_entry(1, "rejected", rejected, champion_mae=0.85, candidate_mae=0.95)],
    )
    fixture_file = tmp_path / "fixture.json"
    fixture_file.write_text(fixture.model_dump_json())
    endpoint = McpEndpoint(
        label="fixture-stdio",
        command=sys.executable,
        args=[str(FIXTURE_SERVER), str(fixture_file)],
        env=child_environment(),
    )

    async def go() -> tuple[CyclePlan, list[str]]:
        async with open_session(endpoint) as session:
            plan = await OfflinePlanner().plan(session, 2, PlanningContext())
            return plan, [record.name for record in session.transcript.tool_calls]

    plan, called = asyncio.run(go())
    assert called == ["get_eval_snapshot_tool", "get_cycle_history_tool", "get_champion_tool"]
    assert plan == plan_for(fixture, cycle=2)
    assert plan.focus_dims == ["acousticness"] and plan.hparams.learning_rate == 1e-4
