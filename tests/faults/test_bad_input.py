"""Issue 12.7: bad input is refused in one clear line with exit 2, and nothing in the artifacts changes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loop.config import PROCESS_VAR_CHOICES, ConfigError, config_env_names, load_config
from tools.core.env_vars import PROCESS_ENV_VARS, is_process_env_var
from tools.core.paths import PROJECT_ROOT, cache_dir
from tools.data.dataset import SHIPPED_DATA_DIR, DatasetError, load_jsonl

SAVED_CONFIG = '{"data": "shipped", "seed": 41}\n'


def _dataset(folder: Path, train: list[bytes] | None = None, valid: list[bytes] | None = None) -> Path:
    """A small copy of the shipped data with `train` / `valid` lines replaced where given."""
    folder.mkdir(parents=True)
    for split, lines in (("train", train), ("valid", valid)):
        shipped = (SHIPPED_DATA_DIR / f"{split}.jsonl").read_bytes().splitlines()[:8]
        (folder / f"{split}.jsonl").write_bytes(b"\n".join(shipped if lines is None else lines) + b"\n")
    return folder


def _shipped_line(split: str, index: int) -> bytes:
    return (SHIPPED_DATA_DIR / f"{split}.jsonl").read_bytes().splitlines()[index]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(tmp_path: Path, *args: str, **env: str) -> str:
    """Run loop.run over an artifacts folder holding a saved config; assert: exit 2, one line, no change."""
    artifacts = tmp_path / "artifacts"
    (artifacts / "loop").mkdir(parents=True, exist_ok=True)
    (artifacts / "loop" / "config.json").write_text(SAVED_CONFIG)
    before = _tree(artifacts)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KOTONE_", "MISTRAL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "loop.run", *args],
        cwd=PROJECT_ROOT,
        env={**base, "KOTONE_ARTIFACTS": str(artifacts), "KOTONE_CACHE": str(cache_dir()), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert _tree(artifacts) == before, "a refused run changed the artifacts"
    return lines[0]


def test_non_utf8_bytes_in_a_dataset_file_name_file_and_line(tmp_path):
    train = [_shipped_line("train", i) for i in range(4)]
    train[2] = train[2].replace(b"Kotone", b"Kot\xff\xfene")
    data = _dataset(tmp_path / "data", train=train)
    line = _refused(tmp_path, "--data", str(data))
    assert f"{data / 'train.jsonl'}:3: not UTF-8" in line


def test_a_whitespace_only_request_is_refused_with_file_and_line(tmp_path):
    valid = [_shipped_line("valid", i) for i in range(4)]
    record = json.loads(valid[1])
    record["request_text"] = " \t  "
    valid[1] = json.dumps(record).encode()
    data = _dataset(tmp_path / "data", valid=valid)
    line = _refused(tmp_path, "--data", str(data))
    assert f"{data / 'valid.jsonl'}:2: request_text" in line and "blank" in line


def test_an_empty_train_split_is_refused_before_anything_runs(tmp_path):
    data = _dataset(tmp_path / "data", train=[b""])
    line = _refused(tmp_path, "--data", str(data))
    assert f"{data / 'train.jsonl'}: no rows" in line


def test_a_refused_data_folder_leaves_nothing_in_a_fresh_artifacts_folder(tmp_path):
    artifacts = tmp_path / "artifacts"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KOTONE_", "MISTRAL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "loop.run", "--data", str(tmp_path / "no-such-data")],
        cwd=PROJECT_ROOT,
        env={**base, "KOTONE_ARTIFACTS": str(artifacts), "KOTONE_CACHE": str(cache_dir())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "no-such-data" in result.stderr, result.stderr
    assert not artifacts.exists(), sorted(str(p) for p in artifacts.rglob("*"))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KOTONE_GATE__CONFIDENCE", "5", "(gate.confidence): Input should be less than 1 (got 5)"),
        ("KOTONE_GATE__BOOTSTRAP_SAMPLES", "-1", "(gate.bootstrap_samples): Input should be greater than"),
        ("KOTONE_STUDENT_OPTIONS", '{"layers_kept": -3}', "layers_kept: Input should be greater than"),
        ("KOTONE_MAX_EVAL_ROWS", "-5", "max_eval_rows): Input should be greater than or equal to 1"),
        ("KOTONE_SEED", "abc", "seed): Input should be a valid integer"),
        ("KOTONE_GATE__CONFIDANCE", "0.9", "unknown setting KOTONE_GATE__CONFIDANCE (did you mean"),
        ("KOTONE_STUDNET", "regression", "unknown setting KOTONE_STUDNET (did you mean KOTONE_STUDENT?)"),
        ("KOTONE_TRACKING", "sometimes", "KOTONE_TRACKING=sometimes: expected one of offline, online"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path, name, value, expected):
    line = _refused(tmp_path, **{name: value})
    assert name in line and expected in line, line


def test_a_bad_flag_value_is_one_line_naming_the_flag(tmp_path):
    line = _refused(tmp_path, "--max-eval-rows", "0")
    assert "--max-eval-rows 0 (max_eval_rows): Input should be greater than or equal to 1" in line


def test_a_config_file_that_is_not_json_is_one_line(tmp_path):
    bad = tmp_path / "loop.json"
    bad.write_text("{data: shipped")
    line = _refused(tmp_path, "--config", str(bad))
    assert f"{bad}: not a JSON file" in line


def test_a_tool_failure_inside_the_session_is_one_line_not_an_exception_group(tmp_path):
    """A base model that does not exist fails inside the MCP session (cycle 0): one line, exit 1."""
    artifacts = tmp_path / "artifacts"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KOTONE_", "MISTRAL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "loop.run", "--cycle", "0"],
        cwd=PROJECT_ROOT,
        env={**base, "KOTONE_ARTIFACTS": str(artifacts), "KOTONE_BASE_MODEL": str(tmp_path / "no-model")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "bootstrap_champion_tool" in errors[0] and "no-model" in errors[0], errors


def test_process_variables_are_not_settings_and_every_kotone_variable_the_code_reads_is_known():
    free_text = {name: "x" for name in PROCESS_ENV_VARS if name not in PROCESS_VAR_CHOICES}
    chosen = {name: choices[-1] for name, choices in PROCESS_VAR_CHOICES.items()}
    assert load_config(environ=free_text | chosen | {"KOTONE_MCP_TOKEN": "t"}).seed == 0
    read = set()
    for path in [
        *PROJECT_ROOT.glob("agent/*.py"),
        *PROJECT_ROOT.glob("loop/**/*.py"),
        *PROJECT_ROOT.glob("tools/**/*.py"),
    ]:
        read |= set(re.findall(r"""environ(?:\.get)?[\[(]\s*["'](KOTONE_[A-Z0-9_]+)["']""", path.read_text()))
    read |= set(re.findall(r"\$\{?(KOTONE_[A-Z0-9_]+)", (PROJECT_ROOT / "scripts" / "setup.sh").read_text()))
    assert read, "found no KOTONE_ reads at all"
    unknown = sorted(n for n in read if n not in config_env_names() and not is_process_env_var(n))
    assert unknown == []


def test_a_bad_row_and_a_bad_setting_raise_the_project_errors_in_process(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_bytes(b'{"request_text": "\xc3\x28"}\n')
    with pytest.raises(DatasetError, match=r"x.jsonl:1: not UTF-8"):
        load_jsonl(bad)
    with pytest.raises(ConfigError, match="KOTONE_GATE__CONFIDENCE=1.5"):
        load_config(environ={"KOTONE_GATE__CONFIDENCE": "1.5"})
