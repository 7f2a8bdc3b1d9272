"""Issues 12.9 and 13.6: a training run that does no step records "not trained" cleanly, and progress in a
log file is plain lines (no tqdm or Hugging Face carriage-return redraws)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from tools.core.paths import PROJECT_ROOT, cache_dir
from tools.core.progress import Progress
from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.student.regression import RegressionConfig, RegressionStudent
from tools.student.regression_training import train_regression


def _rows(n: int) -> list[TrainingRow]:
    return [
        TrainingRow(
            request_text=f"a song for a rainy evening number {i}",
            source_type=SourceType.request_text,
            target=ParamVector.from_list([i % 11, 3, 5, 7, 2, 9]),
        )
        for i in range(n)
    ]


def test_a_regression_run_whose_budget_is_spent_before_the_first_step_is_recorded_as_not_trained(
    tiny_base_model, tmp_path
):
    config = RegressionConfig(layers_kept=2, lora_layers=1, epochs=2, batch_size=4, time_budget_s=1e-3)
    result = train_regression(config, _rows(12), str(tiny_base_model), tmp_path / "student", progress=False)
    assert result.steps == 0 and result.final_loss is None and result.stopped_by_budget
    record = json.loads((tmp_path / "student" / "training_record.json").read_text())
    assert record["steps"] == 0 and record["final_loss"] is None
    # The untrained student (initialised head) still serves: the gate, not a crash, judges it.
    prediction = RegressionStudent.load(str(tiny_base_model), tmp_path / "student").predict_one("anything")
    assert prediction.json_valid


TRAIN_AND_EVALUATE = """
import sys
from pathlib import Path
from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.evaluation.harness import evaluate
from tools.student.regression import RegressionConfig, RegressionStudent
from tools.student.regression_training import train_regression

rows = [
    TrainingRow(request_text=f"a song for a rainy evening number {i}", source_type=SourceType.request_text,
                target=ParamVector.from_list([i % 11, 3, 5, 7, 2, 9]))
    for i in range(24)
]
base, out = sys.argv[1], Path(sys.argv[2])
train_regression(RegressionConfig(layers_kept=2, lora_layers=1, epochs=2, batch_size=4), rows, base, out)
student = RegressionStudent.load(base, out)
evaluate(student.predict_batch, rows, predictor="tiny", decoder="regression", dataset="t", batch_size=2)
print("DONE")
"""


def test_progress_written_to_a_log_file_is_plain_lines_without_redraws(tiny_base_model, tmp_path):
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "KOTONE_PROGRESS_EVERY")}
    with log.open("w") as handle:
        subprocess.run(
            [sys.executable, "-c", TRAIN_AND_EVALUATE, str(tiny_base_model), str(tmp_path / "student")],
            cwd=PROJECT_ROOT,
            env={**env, "KOTONE_PROGRESS_EVERY": "4", "KOTONE_CACHE": str(cache_dir())},
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=True,
        )
    text = log.read_bytes().decode()  # read_text() would turn each \r into a newline
    assert "DONE" in text and "\r" not in text and "\x1b[" not in text, text[-2000:]
    lines = text.splitlines()
    assert [line.split(" loss ")[0] for line in lines if line.startswith("train regression:")] == [
        "train regression: step 4/12",
        "train regression: step 8/12",
        "train regression: step 12/12",
    ]
    assert [line.split(" (")[0] for line in lines if line.startswith("eval tiny")] == [
        "eval tiny [regression]: batch 4/12",
        "eval tiny [regression]: batch 8/12",
        "eval tiny [regression]: batch 12/12",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_unless_tqdm_disable_is_set(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    terminal = _Terminal()
    with Progress(3, "work", stream=terminal) as bar:
        for _ in range(3):
            bar.update(1, loss=0.5)
    assert "\r" in terminal.getvalue()

    monkeypatch.setenv("TQDM_DISABLE", "1")
    quiet = _Terminal()
    with Progress(3, "work", stream=quiet, every=3) as bar:
        for _ in range(3):
            bar.update(1)
    assert "\r" not in quiet.getvalue() and quiet.getvalue().startswith("work: step 3/3")


def test_disabled_progress_writes_nothing(monkeypatch):
    stream = io.StringIO()
    with Progress(5, "silent", stream=stream, enabled=False, every=1) as bar:
        bar.update(5)
    assert stream.getvalue() == ""
