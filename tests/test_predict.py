"""Predicting from the shell and over MCP with the current champion; a split-leaked evaluation refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from tools.core.contracts import MetricSummary, ModelRecord
from tools.core.schema import DIMS, ParamVector, SourceType, TrainingRow
from tools.data.dataset import row_to_record
from tools.data.novelty import NOVELTY_DIR, NoveltyModel
from tools.evaluation.baselines import TextBaseline
from tools.serving.champion import MAX_REQUEST_CHARS

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
    champion = ModelRecord(
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


def predict(artifacts: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.predict", *args],
        input=stdin,
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


def test_bad_rows_are_named_by_line_and_the_others_still_answered(tmp_path):
    model = install_champion(tmp_path)
    requests = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": 0, "request_text": "calm song for the harbour"}),
        "not json",
        json.dumps({"id": 2, "request_text": "   "}),
        '["a list"]',
        json.dumps({"id": 4, "text": "wrong key"}),
        json.dumps({"id": 5, "request_text": "x" * (MAX_REQUEST_CHARS + 1)}),
        json.dumps({"id": 6, "request_text": "sad song for the station"}),
    ]
    requests.write_text("\n".join(lines) + "\n")
    out = tmp_path / "preds.jsonl"
    result = predict(tmp_path, "--file", str(requests), "--out", str(out))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {requests}:2: invalid JSON (Expecting value at column 1)",
        f"error: {requests}:3: request_text is missing or blank",
        f"error: {requests}:4: expected a JSON object with request_text",
        f"error: {requests}:5: request_text is missing or blank",
        f"error: {requests}:6: request_text is {MAX_REQUEST_CHARS + 1} characters; at most {MAX_REQUEST_CHARS}",
    ]
    assert "Traceback" not in result.stderr
    answered = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["id"] for a in answered] == [0, 6]
    assert [a["prediction"] for a in answered] == [
        expected(model, "calm song for the harbour"),
        expected(model, "sad song for the station"),
    ]


def test_a_batch_with_no_good_row_writes_nothing_and_exits_2(tmp_path):
    install_champion(tmp_path)
    requests = tmp_path / "in.jsonl"
    requests.write_text('{"request_text": ""}\n')
    out = tmp_path / "preds.jsonl"
    result = predict(tmp_path, "--file", str(requests), "--out", str(out))
    assert result.returncode == 2
    assert f"{requests}:1: request_text is missing or blank" in result.stderr
    assert not out.exists()


def test_a_batch_file_that_cannot_be_read_is_bad_input(tmp_path):
    install_champion(tmp_path)
    result = predict(tmp_path, "--file", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "missing.jsonl: cannot read" in line


def test_file_dash_reads_the_batch_from_stdin(tmp_path):
    model = install_champion(tmp_path)
    texts = ["loud song for the festival", "bright song for the garden"]
    stdin = "".join(json.dumps({"request_text": t}) + "\n" for t in texts) + "{oops\n"
    result = predict(tmp_path, "--file", "-", stdin=stdin)
    assert result.returncode == 2
    assert "error: <stdin>:3: invalid JSON" in result.stderr
    assert [json.loads(line)["prediction"] for line in result.stdout.splitlines()] == [
        expected(model, t) for t in texts
    ]


def test_one_text_over_the_size_cap_is_refused_like_predict_tool_refuses_it(tmp_path):
    install_champion(tmp_path)
    result = predict(tmp_path, "x" * 100_000)  # near the OS limit of one argument (128 KiB)
    assert result.returncode == 2
    assert f"the request text is 100000 characters; at most {MAX_REQUEST_CHARS}" in result.stderr
    assert result.stdout == ""
    tool, _ = call_predict_tool({"request_texts": ["a song"]})
    item = tool.input_schema["properties"]["request_texts"]["items"]
    assert item["maxLength"] == MAX_REQUEST_CHARS, "the command line and MCP share one cap"


def call_predict_tool(arguments: dict[str, Any]) -> Any:
    from loop.server.assemble import build_server

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
