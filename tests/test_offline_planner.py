"""The offline planner over real MCP sessions: recorded evidence in, K untried candidates out.

It decides from the cross-validated figures of the training split (the champion's vs the train-median
constant's), plans only the augmentation the capacity tool says can be made, and proposes single-lever
moves from the incumbent recipe that the history has not judged yet."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from agent_fixture_server import Fixture, build_server, cycle_entry, failure, metrics

from agent.mcp_client import McpEndpoint, child_environment, open_session
from agent.offline_planner import OfflinePlanner
from agent.planner import PlanningContext, SearchExhausted
from agent.search import DEFAULT_COMPONENTS
from tools.core.contracts import (
    CandidateSpec,
    Capacity,
    CycleHistoryEntry,
    CyclePlan,
    DiagnosedDim,
    Diagnosis,
    EvalSnapshot,
    FailureCase,
    HParams,
    LearnabilitySlice,
    ModelRecord,
    SnapshotReading,
    StudentRecipe,
)
from tools.core.schema import DIMS, rank_dims_by_weakness

FIXTURE_SERVER = Path(__file__).with_name("agent_fixture_server.py")
FLAT = [0.8] * 6
CONSTANT = [1.0] * 6
ALL_LEVERS = [
    "stack",
    "stack-cheap",
    "lm-only",
    "deeper",
    "more-epochs",
    "lr-half",
    "lr-double",
    "rank-up",
    "ordinal",
    "more-folds",
    "no-teacher",
    "more-data",
]


def snapshot(
    champion_cv: list[float] | None = FLAT,
    constant_cv: list[float] | None = CONSTANT,
    failures: list[FailureCase] = (),
    champion_valid: list[float] = FLAT,
) -> EvalSnapshot:
    """Validation figures (the gate's) are given too; planners must not decide from them."""
    return EvalSnapshot(
        champion=None,
        base_metrics=metrics([4.5] * 6),
        champion_metrics=metrics(champion_valid),
        top_failures=list(failures),
        baselines={"train-median": metrics([1.0] * 6)},
        champion_cv=metrics(champion_cv) if champion_cv else None,
        baselines_cv={"train-median": metrics(constant_cv)} if constant_cv else {},
    )


def baseline_champion(kind: str = "tfidf-ridge") -> ModelRecord:
    return ModelRecord(
        cycle=0,
        candidate=kind,
        student_path=f"registry/cycle_0/{kind}/student",
        decoder="regression",
        base_model="bundled",
        recipe=StudentRecipe(family="baseline", baseline=kind),  # type: ignore[arg-type]
        metrics=metrics(FLAT),
    )


def trained_champion(cycle: int, spec: CandidateSpec) -> ModelRecord:
    return ModelRecord(
        cycle=cycle,
        candidate=spec.name,
        student_path=f"registry/cycle_{cycle}/{spec.name}/student",
        decoder="regression",
        base_model="bundled",
        recipe=spec.student,
        hparams=spec.hparams,
        metrics=metrics(FLAT),
    )


def judged(cycle: int, specs: list[CandidateSpec], status: str = "rejected", winner: str | None = None):
    """A history line whose candidates all got `status`, except `winner`, promoted."""
    entry = cycle_entry(cycle, "promoted" if winner else "rejected", specs, candidate_status=status)
    outcomes = [
        o.model_copy(update={"status": "promoted"}) if o.name == winner else o for o in entry.candidates
    ]
    return entry.model_copy(update={"candidates": outcomes})


def fixture(
    evidence: EvalSnapshot | None = None,
    champion: ModelRecord | None = None,
    history: list[CycleHistoryEntry] = (),
    **extra: object,
) -> Fixture:
    return Fixture(
        snapshot=evidence or snapshot(),
        champion=champion or baseline_champion(),
        history=[cycle_entry(0, "baseline"), *history],
        **extra,
    )


def plan_for(evidence: Fixture, cycle: int = 1, k: int = 2) -> CyclePlan:
    """Raises SearchExhausted as the loop sees it (inside its session), not wrapped by the session's exit."""

    async def go() -> CyclePlan | SearchExhausted:
        async with open_session(build_server(evidence)) as session:
            try:
                return await OfflinePlanner().plan(session, cycle, PlanningContext(candidates=k))
            except SearchExhausted as exhausted:
                return exhausted

    result = asyncio.run(go())
    if isinstance(result, SearchExhausted):
        raise result
    return result


def walk_the_search(evidence: Fixture, k: int) -> tuple[list[CyclePlan], SearchExhausted]:
    """Plan cycle after cycle, every candidate rejected, until the planner says the space is exhausted."""
    plans: list[CyclePlan] = []
    for cycle in range(1, 30):
        try:
            plan = plan_for(evidence, cycle, k)
        except SearchExhausted as exhausted:
            return plans, exhausted
        plans.append(plan)
        evidence = evidence.model_copy(
            update={"history": [*evidence.history, judged(cycle, plan.candidates)]}
        )
    raise AssertionError("the search space never ran out")


def keys(plan: CyclePlan) -> list[str]:
    return [spec.recipe_key() for spec in plan.candidates]


# Focus dims: cross-validated, relative to the constant.


def test_focus_is_the_dim_worst_relative_to_the_constant_in_cross_validation_not_on_valid() -> None:
    # energy has the largest CV MAE, but the constant is even worse there; warmth is not learnt at all.
    # On valid (the gate's figures) nostalgia looks worst: the planner must not read that.
    evidence = snapshot(
        champion_cv=[1.2, 0.6, 0.5, 0.5, 0.5, 0.5],
        constant_cv=[2.0, 0.6, 1.0, 1.0, 1.0, 1.0],
        champion_valid=[0.5, 0.5, 0.5, 0.5, 0.5, 2.0],
    )
    plan = plan_for(fixture(evidence))
    assert plan.focus_dims == ["warmth"]
    assert all(spec.focus_dims == ["warmth"] for spec in plan.candidates)
    assert plan.reasons["focus_dims"].startswith("highest CV MAE / train-median CV MAE: warmth 1.00")


def test_equal_relative_errors_are_ranked_by_failure_concentration() -> None:
    failures = [
        failure([5, 5, 5, 5, 5, 10], [5, 5, 5, 5, 5, 5]),
        failure([5, 5, 5, 5, 5, 0], [5, 5, 5, 5, 5, 5]),
    ]
    plan = plan_for(fixture(snapshot([0.5, 0.5, 1.2, 0.5, 0.5, 1.2], failures=failures)))
    assert plan.focus_dims == ["nostalgia", "brightness"]
    buckets = plan.candidates[0].augmentation.target_buckets
    assert buckets == {"nostalgia": [0, 10], "brightness": [0, 1, 2, 8, 9, 10]}


def test_up_to_three_dims_within_a_tenth_of_the_worst_ratio_are_chosen() -> None:
    plan = plan_for(fixture(snapshot([1.30, 1.25, 1.21, 1.20, 0.5, 0.5])))
    assert plan.focus_dims == ["energy", "warmth", "brightness"]


def test_without_a_champion_cv_record_the_constants_own_cv_error_decides() -> None:
    plan = plan_for(fixture(snapshot(champion_cv=None, constant_cv=[0.9, 0.9, 0.9, 0.9, 1.4, 0.9])))
    assert plan.focus_dims == ["complexity"]
    assert plan.reasons["focus_dims"].startswith("highest train-median CV MAE: complexity 1.40")


def test_without_the_constants_cv_record_the_champions_own_cv_error_decides_and_says_so() -> None:
    plan = plan_for(fixture(snapshot(champion_cv=[0.9, 1.3, 0.9, 0.9, 0.9, 0.9], constant_cv=None)))
    assert plan.focus_dims == ["warmth"]
    assert plan.reasons["focus_dims"].startswith("highest champion CV MAE: warmth 1.30")


def _slice(dim: str, source_type: str, learnable: bool) -> LearnabilitySlice:
    return LearnabilitySlice(
        source_type=source_type,
        dim=dim,
        n_rows=40,
        constant_mae=1.0,
        model_mae=0.7 if learnable else 1.0,
        learnable=learnable,
    )


def test_dims_the_learnability_slices_call_unlearnable_are_skipped() -> None:
    slices = [_slice("energy", s, learnable=False) for s in ("rule_prompt", "request_text")]
    slices.append(_slice("acousticness", "request_text", learnable=True))
    plan = plan_for(fixture(snapshot([1.5, 0.5, 0.5, 1.1, 0.5, 0.5]), learnability=slices))
    assert plan.focus_dims == ["acousticness"]
    assert "skipped unlearnable energy" in plan.reasons["focus_dims"]


def test_when_every_dim_is_unlearnable_learnability_is_ignored_and_the_reason_says_so() -> None:
    slices = [_slice(dim, "request_text", learnable=False) for dim in ("energy", "warmth", "brightness")]
    slices += [
        _slice(dim, "request_text", learnable=False) for dim in ("acousticness", "complexity", "nostalgia")
    ]
    plan = plan_for(fixture(snapshot([1.5, 0.5, 0.5, 1.1, 0.5, 0.5]), learnability=slices))
    assert plan.focus_dims == ["energy"]
    assert "every dim flagged unlearnable" in plan.reasons["focus_dims"]


def test_a_failing_learnability_tool_is_recorded_and_planning_goes_on_without_it() -> None:
    evidence = fixture(snapshot([1.5, 0.5, 0.5, 1.1, 0.5, 0.5]), learnability_error="no loop config yet")

    async def go() -> tuple[CyclePlan, list]:
        async with open_session(build_server(evidence)) as session:
            plan = await OfflinePlanner().plan(session, 1, PlanningContext())
            return plan, session.transcript.tool_calls

    plan, calls = asyncio.run(go())
    assert plan.focus_dims == ["energy"]
    (learnability_call,) = [call for call in calls if call.name == "get_learnability_tool"]
    assert learnability_call.is_error and "no loop config yet" in learnability_call.error


# Augmentation: what the capacity tool says can be made, never more.


def test_augmentation_grows_with_the_hard_failures_up_to_the_capacity() -> None:
    hard = [failure([0, 10, 0, 10, 0, 10], [5] * 6) for _ in range(4)]
    mild = [failure([6, 5, 5, 5, 5, 5], [5] * 6)]
    roomy = Capacity(teacher="offline", max_teacher_pairs=600, max_replay_rows=200)
    tight = Capacity(teacher="offline", max_teacher_pairs=100, max_replay_rows=25)

    def augmentation(failures: list[FailureCase], capacity: Capacity) -> tuple[int, int, str]:
        plan = plan_for(fixture(snapshot(failures=failures), capacity=capacity))
        spec = plan.candidates[0].augmentation  # "stack": the incumbent's augmentation, untouched
        assert plan.clipped == [], "planned within the capacity, not clipped to it"
        return spec.teacher_pairs, spec.replay_rows, plan.reasons["augmentation"]

    assert augmentation(mild, roomy)[:2] == (60, 20)
    many_pairs, many_rows, many_reason = augmentation(hard + mild, roomy)
    assert (many_pairs, many_rows) == (180, 60) and many_reason.startswith("4 hard failures of 5")
    capped_pairs, capped_rows, capped_reason = augmentation(hard + mild, tight)
    assert (capped_pairs, capped_rows) == (100, 25)
    assert "100 teacher pairs (teacher offline, at most 100)" in capped_reason
    assert "25 replay rows (at most 25)" in capped_reason


@pytest.mark.parametrize(
    ("capacity", "data_levers"),
    [
        # no-teacher would be the incumbent itself: there are no teacher pairs to drop
        (Capacity(teacher="none", max_teacher_pairs=0, max_replay_rows=100), ["more-data"]),
        # more-data cannot add anything: the incumbent already asks for all there is
        (Capacity(teacher="offline", max_teacher_pairs=90, max_replay_rows=0), ["no-teacher"]),
    ],
    ids=["replay-only", "no-replay-sources"],
)
def test_no_candidate_of_a_whole_night_asks_for_more_than_the_capacity(
    capacity: Capacity, data_levers: list[str]
) -> None:
    hard = [failure([0, 10, 0, 10, 0, 10], [5] * 6) for _ in range(4)]
    plans, _ = walk_the_search(fixture(snapshot(failures=hard), capacity=capacity), k=4)
    specs = [spec for plan in plans for spec in plan.candidates]
    assert [spec.name for spec in specs if spec.name in ("no-teacher", "more-data")] == data_levers
    assert all(spec.augmentation.teacher_pairs <= capacity.max_teacher_pairs for spec in specs)
    assert all(spec.augmentation.replay_rows <= capacity.max_replay_rows for spec in specs)
    assert all(plan.clipped == [] for plan in plans)


def test_a_replay_only_teacher_gets_no_teacher_pairs_and_the_plan_says_so() -> None:
    capacity = Capacity(teacher="none", max_teacher_pairs=0, max_replay_rows=40)
    plan = plan_for(fixture(capacity=capacity), k=4)
    assert all(spec.augmentation.teacher_pairs == 0 for spec in plan.candidates)
    assert "0 teacher pairs (teacher none, at most 0)" in plan.reasons["augmentation"]
    assert "20 replay rows (at most 40)" in plan.reasons["augmentation"]


# Candidates: K untried single-lever moves from the incumbent.


def test_k_candidates_with_distinct_names_recipes_and_seeds_each_with_a_reason() -> None:
    plan = plan_for(fixture(), cycle=3, k=4)
    names = [spec.name for spec in plan.candidates]
    assert len(plan.candidates) == 4 and len(set(names)) == 4
    assert len(set(keys(plan))) == 4
    assert len({spec.seed for spec in plan.candidates}) == 4
    assert all(spec.reason for spec in plan.candidates)
    assert {"focus_dims", "augmentation", "search"} <= set(plan.reasons)
    assert plan.planner == "offline" and plan.cycle == 3 and plan.fallback_reason is None


def test_when_the_champion_is_a_cycle_0_baseline_the_default_stack_is_proposed_first() -> None:
    context = PlanningContext()
    plan = plan_for(fixture(champion=baseline_champion("additive-ridge")), k=2)
    stack, cheap = plan.candidates
    assert (stack.name, cheap.name) == ("stack", "stack-cheap")
    assert stack.student == StudentRecipe(family="stack", components=DEFAULT_COMPONENTS, folds=context.folds)
    assert stack.hparams == context.default_hparams
    assert cheap.student.components == ["train-median", "tfidf-ridge", "additive-ridge"]


def test_the_champions_own_recipe_is_not_proposed_again() -> None:
    first = plan_for(fixture(), cycle=1, k=1)
    (stack,) = first.candidates
    # The champion's line is not in the history the planner reads (e.g. cut by the history limit):
    # the planner still knows its recipe from the champion record.
    plan = plan_for(fixture(champion=trained_champion(1, stack)), cycle=2, k=3)
    assert stack.recipe_key() not in keys(plan)
    assert [spec.name for spec in plan.candidates] == ["stack-cheap", "lm-only", "deeper"]


@pytest.mark.parametrize("status", ["rejected", "pruned", "not_trained"])
def test_a_recipe_the_history_judged_is_never_proposed_again_whatever_its_seed(status: str) -> None:
    first = plan_for(fixture(), cycle=1, k=2)
    reseeded = [spec.model_copy(update={"seed": 1234 + i}) for i, spec in enumerate(first.candidates)]
    second = plan_for(fixture(history=[judged(1, reseeded, status=status)]), cycle=2, k=2)
    assert not set(keys(first)) & set(keys(second))
    assert [spec.name for spec in second.candidates] == ["lm-only", "deeper"]


def test_a_crashed_recipe_was_not_judged_and_is_tried_again_with_a_new_seed() -> None:
    first = plan_for(fixture(), cycle=1, k=2)
    second = plan_for(fixture(history=[judged(1, first.candidates, status="crashed")]), cycle=2, k=2)
    assert keys(second) == keys(first)
    assert not {spec.seed for spec in first.candidates} & {spec.seed for spec in second.candidates}


def test_after_the_champion_changes_the_moves_start_from_the_new_champions_recipe() -> None:
    first = plan_for(fixture(), cycle=1, k=4)
    assert [spec.name for spec in first.candidates] == ["stack", "stack-cheap", "lm-only", "deeper"]
    deeper = first.candidate("deeper")
    evidence = fixture(
        champion=trained_champion(1, deeper), history=[judged(1, first.candidates, winner="deeper")]
    )
    second = plan_for(evidence, cycle=2, k=2)
    lm_only, deeper_still = second.candidates
    # "stack" is the champion's own recipe now, "stack-cheap" was judged: both skipped.
    assert (lm_only.name, deeper_still.name) == ("lm-only", "deeper")
    assert lm_only.student.options == deeper.student.options == {"layers_kept": 6, "lora_layers": 3}
    assert deeper_still.student.options == {"layers_kept": 8, "lora_layers": 4}


def test_from_a_cheap_stack_champion_no_lm_knob_is_turned_and_the_lm_comes_back_with_its_defaults() -> None:
    defaults = {"layers_kept": 6}
    context = PlanningContext(default_options=defaults)

    async def go(evidence: Fixture, cycle: int, k: int) -> CyclePlan:
        async with open_session(build_server(evidence)) as session:
            return await OfflinePlanner().plan(session, cycle, context.model_copy(update={"candidates": k}))

    first = asyncio.run(go(fixture(), 1, 2))
    cheap = first.candidate("stack-cheap")
    evidence = fixture(
        champion=trained_champion(1, cheap), history=[judged(1, first.candidates, winner="stack-cheap")]
    )
    second = asyncio.run(go(evidence, 2, 8))
    # deeper, more-epochs, lr-half, lr-double, rank-up and ordinal would train exactly the cheap stack again.
    assert [spec.name for spec in second.candidates] == ["lm-only", "more-folds", "no-teacher", "more-data"]
    assert second.candidate("lm-only").student.options == defaults
    assert second.candidate("more-folds").student.options == {}


def test_a_night_of_rejections_tries_every_lever_once_then_the_search_is_exhausted() -> None:
    plans, exhausted = walk_the_search(fixture(), k=4)
    proposed = [spec for plan in plans for spec in plan.candidates]
    assert [spec.name for spec in proposed] == ALL_LEVERS
    assert len({spec.recipe_key() for spec in proposed}) == len(ALL_LEVERS)
    assert len(plans) == 3 and "every move from the incumbent" in str(exhausted)
    assert f"{len(ALL_LEVERS)} recipes judged" in str(exhausted)


def test_the_same_evidence_gives_the_same_plan_and_no_clips() -> None:
    evidence = fixture(snapshot([0.9, 0.7, 1.1, 0.8, 0.8, 0.8]))
    first, second = plan_for(evidence, k=3), plan_for(evidence, k=3)
    assert first == second and first.clipped == [] and first.fallback_reason is None


def test_over_stdio_the_planner_reads_the_same_evidence_and_decides_the_same(tmp_path: Path) -> None:
    replay_only = Capacity(teacher="none", max_teacher_pairs=0, max_replay_rows=30)
    before = fixture(snapshot([0.8, 0.8, 0.8, 1.4, 0.8, 0.8]), capacity=replay_only)
    evidence = before.model_copy(
        update={"history": [*before.history, judged(1, plan_for(before, cycle=1).candidates)]}
    )
    fixture_file = tmp_path / "fixture.json"
    fixture_file.write_text(evidence.model_dump_json())
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
    assert called == [
        "get_eval_snapshot_tool",
        "get_cycle_history_tool",
        "get_champion_tool",
        "get_augmentation_capacity_tool",
    ]
    assert plan == plan_for(evidence, cycle=2)
    assert plan.focus_dims == ["acousticness"]
    assert [spec.name for spec in plan.candidates] == ["lm-only", "deeper"]
    assert all(spec.augmentation.teacher_pairs == 0 for spec in plan.candidates)
    assert plan.candidate("deeper").hparams == HParams()


def test_dims_rank_by_ratio_to_the_constant_then_by_hard_failures_when_ratios_tie() -> None:
    ratios = dict.fromkeys(DIMS, 1.0) | {"nostalgia": 1.2, "brightness": 1.004}
    failures = dict.fromkeys(DIMS, 0) | {"acousticness": 3, "complexity": 1, "brightness": 0}
    assert rank_dims_by_weakness(ratios, failures) == [
        "nostalgia",  # highest ratio
        "acousticness",  # tied at 1.00 with the rest (brightness's 1.004 included): most hard failures
        "complexity",
        "energy",  # then the fixed order
        "warmth",
        "brightness",
    ]


def _diagnosis(order: list[str], ratios: list[float]) -> Diagnosis:
    return Diagnosis(
        cycle=1,
        evidence="out-of-fold errors on the training split",
        weak_dims=[
            DiagnosedDim(
                dim=d,
                champion_cv_mae=r,
                constant_cv_mae=1.0,
                ratio_to_constant=r,
                failures_off_by_2_plus=0,
                learnable_slices=["rule_prompt"],
            )
            for d, r in zip(order, ratios, strict=True)
        ],
        learnability=[],
    )


def test_the_focus_is_the_top_of_the_diagnosis_ranking_not_a_ranking_of_its_own() -> None:
    """One weak-dim ranking per cycle: the snapshot's figures say energy is weakest, the diagnosis (the
    champion's 20 worst out-of-fold rows, the cycle-0 constant's CV) says nostalgia then acousticness;
    the plan follows the diagnosis, window and all."""
    order = ["nostalgia", "acousticness", "warmth", "energy", "brightness", "complexity"]
    diagnosis = _diagnosis(order, [1.30, 1.22, 1.05, 1.0, 0.9, 0.8])
    evidence = fixture(snapshot([1.5, 0.5, 0.5, 0.5, 0.5, 0.5]))

    async def go() -> CyclePlan:
        async with open_session(build_server(evidence)) as session:
            context = PlanningContext(candidates=2, diagnosis=diagnosis)
            return await OfflinePlanner().plan(session, 1, context)

    plan = asyncio.run(go())
    assert plan.focus_dims == ["nostalgia", "acousticness"] == diagnosis.ranking[:2]
    assert all(spec.focus_dims == plan.focus_dims for spec in plan.candidates)
    assert plan.reasons["focus_dims"].startswith("diagnosis (out-of-fold errors on the training split)")


def test_the_snapshot_stages_reading_is_the_planners_evidence_and_is_not_read_again() -> None:
    evidence = fixture(snapshot([1.30, 1.25, 1.21, 1.20, 0.5, 0.5]))
    reading = SnapshotReading(
        snapshot=evidence.snapshot, history=evidence.history, champion=evidence.champion
    )

    async def go(context: PlanningContext) -> tuple[CyclePlan, list[str]]:
        async with open_session(build_server(evidence)) as session:
            plan = await OfflinePlanner().plan(session, 1, context)
            return plan, [call.name for call in session.transcript.tool_calls]

    from_tools, calls_without = asyncio.run(go(PlanningContext(candidates=2)))
    handed_over, calls_with = asyncio.run(go(PlanningContext(candidates=2, snapshot=reading)))
    assert handed_over.candidates == from_tools.candidates
    assert handed_over.reasons["evidence"].startswith("the snapshot stage's reading")
    assert {"get_eval_snapshot_tool", "get_cycle_history_tool", "get_champion_tool"} <= set(calls_without)
    assert not {"get_eval_snapshot_tool", "get_cycle_history_tool", "get_champion_tool"} & set(calls_with)
