"""The champion pointer and the cycle history have one reader each (`tools.core.records`), which serving, the
MCP tools and the loop share: a bad file is one line naming the file (and the line), whoever reads it."""

from __future__ import annotations

import ast

import pytest

from tools.core.contracts import CycleHistoryEntry, MetricSummary, ModelRecord
from tools.core.paths import PROJECT_ROOT
from tools.core.records import (
    CHAMPION_FILE,
    HISTORY_FILE,
    RecordError,
    champion_path,
    history_path,
    read_champion,
    read_history,
)

METRICS = MetricSummary(
    vector_mae=0.5,
    vector_mae_rounded=0.4,
    mse_norm=0.01,
    r2=0.2,
    json_valid_rate=1.0,
    fallback_rate=0.0,
    p50_latency_ms=1.0,
    p95_latency_ms=2.0,
    per_dim_mae={},
    n_rows=10,
)
CHAMPION = ModelRecord(
    cycle=1, candidate="stack", decoder="regression", student_path=None, base_model="tiny", metrics=METRICS
)


@pytest.fixture(autouse=True)
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    return tmp_path


def entry(cycle: int) -> CycleHistoryEntry:
    return CycleHistoryEntry(cycle=cycle, status="rejected", description=f"cycle {cycle}", started_at="t")


def write_history(*lines: str) -> None:
    history_path().parent.mkdir(parents=True, exist_ok=True)
    history_path().write_text("".join(line + "\n" for line in lines))


def write_champion(text: str) -> None:
    champion_path().parent.mkdir(parents=True, exist_ok=True)
    champion_path().write_text(text)


def test_the_records_live_where_the_readme_says(artifacts):
    assert champion_path() == artifacts / "registry" / "champion.json"
    assert history_path() == artifacts / "loop" / "history.jsonl"


def test_no_champion_and_no_history_read_as_none_and_empty():
    assert read_champion() is None
    assert read_history() == []


def test_the_champion_and_the_history_read_back_as_written():
    write_champion(CHAMPION.model_dump_json())
    write_history(entry(0).model_dump_json(), "", entry(1).model_dump_json())
    assert read_champion() == CHAMPION
    assert read_history() == [entry(0), entry(1)]


def test_a_bad_history_line_is_one_line_naming_the_file_and_the_line():
    write_history(entry(0).model_dump_json(), '{"cycle": "one"}', "not json")
    with pytest.raises(RecordError) as error:
        read_history()
    message = str(error.value)
    assert message.startswith(f"{history_path()}:2: not a valid history entry") and "\n" not in message
    assert "cycle" in message  # the first failing field


def test_a_bad_champion_pointer_is_one_line_naming_the_file():
    write_champion('{"cycle": 1')
    with pytest.raises(RecordError) as error:
        read_champion()
    assert str(error.value).startswith(f"{champion_path()}: not a valid champion record")
    assert "\n" not in str(error.value)


def test_every_reader_of_a_bad_champion_pointer_says_so_in_one_line():
    from mcp.server.mcpserver.exceptions import ToolError

    from loop.failures import exit_code, one_line
    from loop.registry import current_champion
    from tools.mcp.loop_tools import get_champion_tool
    from tools.serving.champion import ChampionUnavailable
    from tools.serving.champion import read_champion as serving_champion

    write_champion("{}")
    with pytest.raises(ChampionUnavailable, match="not a valid champion record"):
        serving_champion()
    with pytest.raises(ToolError, match="not a valid champion record"):
        get_champion_tool()
    with pytest.raises(RecordError) as error:
        current_champion()
    assert exit_code(error.value) == 2 and str(champion_path()) in one_line(error.value)


def test_every_reader_of_a_bad_history_line_names_the_line():
    from mcp.server.mcpserver.exceptions import ToolError

    from loop.history import read_history as loop_history
    from loop.report import cycle_rows
    from tools.mcp.loop_tools import get_cycle_history_tool

    write_history(entry(0).model_dump_json(), "{")
    where = f"{history_path()}:2:"
    with pytest.raises(ToolError, match=where):
        get_cycle_history_tool()
    for reader in (loop_history, lambda: cycle_rows(history_path().parent / "report.html")):
        with pytest.raises(RecordError, match=where):
            reader()


def test_the_report_and_publish_commands_refuse_a_bad_record_in_one_line(capsys):
    from loop.publish import main as publish
    from loop.report import main as report

    write_history("[1]")
    assert report([]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {history_path()}:1: not a valid history entry (1 error(s); first: ")
    write_champion("{}")
    assert publish(["--dry-run"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {champion_path()}: not a valid champion record")


def _path_literals(path) -> list[str]:
    """String constants (docstrings aside) that name a record file as a path part."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value.strip().endswith((CHAMPION_FILE, HISTORY_FILE))
    ]


def test_no_module_but_the_reader_names_the_record_files():
    """Serving, MCP and the loop reach the records through `tools.core.records`, never their own path."""
    reader = PROJECT_ROOT / "tools" / "core" / "records.py"
    found = [
        f"{path.relative_to(PROJECT_ROOT)}: {literal!r}"
        for package in ("agent", "loop", "tools")
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        if path != reader
        for literal in _path_literals(path)
    ]
    assert found == []
    assert _path_literals(reader) == [CHAMPION_FILE, HISTORY_FILE]  # the check sees a hard-coded name
