"""One stage table (`loop/stages/table.py`): the resume state machine, the stage tools the server lists and
the driver are all derived from it, and every stage tool tells an MCP client the shape of its result."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from mcp import Client

from loop.driver.cycle import LOOP_STAGES
from loop.server import stage_tools
from loop.server.assemble import build_server
from loop.stages import console
from loop.stages.candidate import TrainResults, TrainSummary
from loop.stages.progress import STAGES, CycleState
from loop.stages.table import CYCLE_STAGES, TOOL_STAGES


def _listed() -> dict[str, object]:
    async def listed() -> dict[str, object]:
        async with Client(build_server()) as client:
            return {tool.name: tool for tool in (await client.list_tools()).tools}

    return asyncio.run(listed())


def test_the_resume_state_machine_runs_the_tables_stages_in_order(tmp_path):
    assert tuple(s.name for s in CYCLE_STAGES) == STAGES
    state = CycleState.load_or_new(tmp_path, 1)
    order = []
    while (stage := state.next_stage()) is not None:
        order.append(stage)
        state.mark_done(stage, tmp_path)
    assert order == [s.name for s in CYCLE_STAGES] and state.finished_at is not None


def test_every_stage_tool_is_listed_with_the_tables_arguments_and_an_output_schema():
    tools = _listed()
    for stage in TOOL_STAGES:
        tool = tools[stage.tool]
        assert tool.output_schema, f"{stage.tool} lists no outputSchema"
        assert tool.output_schema["title"] == stage.result.__name__
        assert set(tool.output_schema.get("properties") or tool.output_schema["additionalProperties"]) == set(
            stage.result.model_json_schema().get("properties")
            or stage.result.model_json_schema()["additionalProperties"]
        )
        assert set(tool.input_schema["properties"]) == set(stage.arguments.model_fields), stage.tool


def test_no_tool_is_listed_without_an_output_schema():
    assert [name for name, tool in _listed().items() if not tool.output_schema] == []


def test_the_driver_runs_exactly_the_stages_the_table_gives_no_tool():
    assert set(LOOP_STAGES) == {s.name for s in CYCLE_STAGES if s.tool is None}


def test_registration_refuses_a_tool_that_disagrees_with_its_row():
    gate_row = next(s for s in TOOL_STAGES if s.name == "gate")
    assert stage_tools.tool_for(gate_row) is stage_tools.run_gate_tool
    with pytest.raises(TypeError, match="run_gate_tool"):
        stage_tools.tool_for(dataclasses.replace(gate_row, result=TrainResults))


def test_console_lines_are_read_from_the_typed_results():
    results = TrainResults(
        {
            "a": TrainSummary(status="trained", cv_mae=0.51234, cv_mae_rounded=0.4, note=""),
            "b": TrainSummary(status="pruned", cv_mae=None, cv_mae_rounded=None, note="surely worse"),
        }
    )
    assert console.train_lines(3, results) == [
        "  a: trained CV MAE 0.512 / 0.400",
        "  b: pruned  surely worse",
    ]


def test_the_commands_help_names_the_tables_stages_in_order():
    import loop.run

    summary = loop.run.__doc__.split("\n\n")[0]
    assert summary.split(": ", 1)[1].replace("\n", " ").rstrip(".").split(" -> ") == list(STAGES)
