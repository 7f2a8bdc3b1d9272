"""Predicting from the shell and over MCP with the current champion; a split-leaked evaluation refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tools.core.contracts import ChampionRecord, MetricSummary
from tools.core.schema import DIMS, ParamVector, SourceType, TrainingRow
from tools.data.dataset import row_to_record
from tools.data.novelty import NOVELTY_DIR, NoveltyModel
from tools.evaluation.baselines import TextBaseline

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRAIN = [
    TrainingRow(
        request_text=f"{mood} song number {i} for the {place}",
        source_type=SourceType.request_text,
        target=ParamVector.from_list([(i + k) % 11 for k in range(6)]),
    )
    for i, (mood, place) in enumerate(
        [("calm", "harbour"), ("loud", "festival"), ("sad", "station"), ("bright", "garden")] * 3
    )
]
METRICS = MetricSummary(
    vector_mae=1.0,
    vector_mae_rounded=1.0,
    mse_norm=0.01,
    r2=0.5,
    json_valid_rate=1.0,
    fallback_rate=0.0,
    p50_latency_ms=1.0,
    p95_latency_ms=2.0,
    per_dim_mae=dict.fromkeys(DIMS, 1.0),
    n_rows=12,
)


def install_champion(artifacts: Path, *, novelty: bool = True) -> TextBaseline:
    """A TF-IDF ridge student as the champion (any student kind is served through the same interface),
    with the novelty model of its training rows beside it unless it predates novelty."""
    model = TextBaseline("tfidf-ridge").fit(TRAIN)
    model.save(artifacts / "registry" / "cycle_2" / "student")
    if novelty:
        novelty_model(TRAIN).save(artifacts / "registry" / "cycle_2" / "student" / NOVELTY_DIR)
    champion = ChampionRecord(
        cycle=2,
        candidate="cycle2-ridge",
        student_path="registry/cycle_2/student",
        decoder="baseline",
        base_model="bundled",
        metrics=METRICS,
    )
    (artifacts / "registry" / "champion.json").write_text(champion.model_dump_json())
    return model


def novelty_model(rows: list[TrainingRow]) -> NoveltyModel:
    return NoveltyModel().fit([r.request_text for r in rows])


def predict(artifacts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.predict", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "KOTONE_ARTIFACTS": str(artifacts)},
        timeout=120,
    )


def expected(model: TextBaseline, text: str) -> dict[str, int]:
    (values,) = model.predict_values([text]).clip(0, 10)
    return {d: int(round(v)) for d, v in zip(DIMS, values, strict=True)}


def test_without_a_champion_predict_says_so_in_one_line(tmp_path):
    result = predict(tmp_path, "a calm song")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "no champion yet" in result.stderr and "Traceback" not in result.stderr


def test_one_text_prints_the_champions_json_line(tmp_path):
    model = install_champion(tmp_path)
    result = predict(tmp_path, "a calm song for the harbour")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    answer = json.loads(line)
    assert answer["request_text"] == "a calm song for the harbour"
    assert answer["prediction"] == expected(model, "a calm song for the harbour")
    assert answer["json_valid"] is True and answer["served_by"] == "model"
    assert answer["novelty"] == novelty_model(TRAIN).score(["a calm song for the harbour"]).item()


def test_a_champion_saved_before_novelty_still_answers_with_the_same_six_params(tmp_path):
    model = install_champion(tmp_path, novelty=False)
    result = predict(tmp_path, "a calm song for the harbour")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["prediction"] == expected(model, "a calm song for the harbour")
    assert answer["novelty"] is None


def test_a_batch_of_unlabelled_rows_keeps_their_fields(tmp_path):
    model = install_champion(tmp_path)
    requests = tmp_path / "in.jsonl"
    texts = ["loud song for the festival", "sad song for the station", TRAIN[0].request_text]
    rows = [{"id": i, "request_text": t} for i, t in enumerate(texts)]
    rows[2] = row_to_record(TRAIN[0])  # a labelled training row is answered too: no split check here
    requests.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    out = tmp_path / "preds.jsonl"
    result = predict(tmp_path, "--file", str(requests), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["request_text"] for line in lines] == texts
    assert [line.get("id") for line in lines] == [0, 1, None]
    assert [line["prediction"] for line in lines] == [expected(model, t) for t in texts]
    assert [line["novelty"] for line in lines] == novelty_model(TRAIN).score(texts).tolist()
    assert lines[2]["novelty"] < 0.95  # a training row is familiar
    (summary,) = [line for line in result.stderr.splitlines() if line.startswith("novelty:")]
    share = sum(line["novelty"] >= 0.95 for line in lines) / len(lines)
    assert f"novelty: {share:.0%} of these 3 requests are less familiar than 95% of training" in summary


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"request_text": "fine"}\nnot json\n', "in.jsonl:2: invalid JSON"),
        ('{"request_text": "fine"}\n{"text": "wrong key"}\n', "in.jsonl:2: request_text is missing"),
        ('["a list"]\n', "in.jsonl:1: expected a JSON object"),
    ],
)
def test_a_bad_request_line_is_named_and_nothing_is_written(tmp_path, content, message):
    install_champion(tmp_path)
    requests = tmp_path / "in.jsonl"
    requests.write_text(content)
    out = tmp_path / "preds.jsonl"
    result = predict(tmp_path, "--file", str(requests), "--out", str(out))
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def call_predict_tool(arguments: dict[str, Any]) -> Any:
    from tools.mcp.server import build_server

    async def go() -> Any:
        async with Client(build_server()) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return tools["predict_tool"], await client.call_tool("predict_tool", arguments)

    return anyio.run(go)


def test_predict_tool_answers_with_the_champion(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    model = install_champion(tmp_path)
    tool, result = call_predict_tool({"request_texts": ["bright song for the garden"]})
    assert tool.annotations.read_only_hint and not result.is_error
    answer = result.structured_content
    assert (answer["champion_cycle"], answer["champion_candidate"]) == (2, "cycle2-ridge")
    assert answer["lines"][0]["prediction"] == expected(model, "bright song for the garden")
    novelty = novelty_model(TRAIN).score(["bright song for the garden"]).item()
    assert answer["lines"][0]["novelty"] == novelty
    assert answer["novelty"]["n_requests"] == 1 and answer["novelty"]["unfamiliar_share"] == float(
        novelty >= 0.95
    )
    assert "novelty" in tool.output_schema["properties"]


def test_predict_tool_without_a_champion_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    _, result = call_predict_tool({"request_texts": ["a song"]})
    assert result.is_error and "no champion yet" in result.content[0].text


def test_evaluate_refuses_a_split_leak_in_one_line(tmp_path):
    data = tmp_path / "leaky"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(row_to_record(r)) + "\n" for r in TRAIN))
    (data / "valid.jsonl").write_text(json.dumps(row_to_record(TRAIN[3])) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "tools.evaluate", "--data", str(data), "--baselines-only"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "appears in both 'train' and 'valid'" in line
