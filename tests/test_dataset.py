"""Loading rows: the kotone-ft format, clear errors with file and line, no request in two splits."""

import json
import re

import pytest

from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import (
    REAL_DATA_DIR,
    DatasetError,
    SplitLeakError,
    data_hash,
    load_dir,
    load_jsonl,
    normalise_text,
    text_key,
    write_jsonl,
)

GOOD = {
    "source_type": "request_text",
    "request_text": "a calm tune for a rainy library",
    "target_hidden_params": {
        "vector": {
            "energy": 2,
            "warmth": 7,
            "brightness": 3,
            "acousticness": 8,
            "complexity": 4,
            "nostalgia": 6,
        }
    },
}


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_reads_the_kotone_ft_format(tmp_path):
    rows = load_jsonl(_write(tmp_path / "train.jsonl", [GOOD, "", GOOD | {"request_text": "another"}]))
    assert len(rows) == 2
    assert rows[0].target.as_list() == [2, 7, 3, 8, 4, 6]
    assert rows[0].source_type is SourceType.request_text


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "invalid JSON"),
        (GOOD | {"target_hidden_params": {"vector": {"energy": 2}}}, "missing warmth"),
        (
            GOOD
            | {"target_hidden_params": {"vector": GOOD["target_hidden_params"]["vector"] | {"energy": 11}}},
            "energy",
        ),
        (
            GOOD
            | {"target_hidden_params": {"vector": GOOD["target_hidden_params"]["vector"] | {"energy": 2.5}}},
            "not an integer",
        ),
        (GOOD | {"source_type": "tweet"}, "source_type"),
        (GOOD | {"request_text": ""}, "request_text"),
        ([1, 2], "expected a JSON object, got list"),
    ],
)
def test_a_malformed_row_names_file_and_line(tmp_path, bad, message):
    path = _write(tmp_path / "train.jsonl", [GOOD, bad])
    with pytest.raises(DatasetError) as error:
        load_jsonl(path)
    assert f"{path}:2" in str(error.value)
    assert message in str(error.value)


def test_a_request_in_two_splits_is_refused(tmp_path):
    _write(tmp_path / "train.jsonl", [GOOD])
    _write(tmp_path / "valid.jsonl", [GOOD | {"request_text": "A calm tune, for a rainy library!"}])
    with pytest.raises(SplitLeakError, match="'train' and 'valid'"):
        load_dir(tmp_path)


def test_write_then_load_round_trips_and_hash_is_stable(tmp_path):
    rows = [
        TrainingRow(
            request_text=f"tune {i}",
            source_type=SourceType.rule_prompt,
            target=ParamVector.from_list([i] * 6),
        )
        for i in range(3)
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    loaded = load_jsonl(tmp_path / "train.jsonl")
    assert [r.target for r in loaded] == [r.target for r in rows]
    assert data_hash(loaded) == data_hash(rows)
    assert data_hash(loaded[::-1]) != data_hash(rows)
    record = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert (
        record["messages"][2]["content"]
        == '{"energy":0,"warmth":0,"brightness":0,"acousticness":0,"complexity":0,"nostalgia":0}'
    )


@pytest.mark.skipif(not REAL_DATA_DIR.exists(), reason="../shared/kotone-ft is not present")
def test_real_kotone_ft_loads_with_expected_counts():
    data = load_dir(REAL_DATA_DIR)
    assert (len(data.train), len(data.valid)) == (707, 88)


def test_hub_loader_reads_the_downloaded_jsonl_splits(tmp_path, monkeypatch):
    """Offline stand-in for the Hub: the real huggingface_hub download call is replaced by a local folder
    laid out like the published dataset (our own parsing of what it returns runs unchanged)."""
    import huggingface_hub

    from tools.data.dataset import load_hub

    data_dir = tmp_path / "snapshot" / "data" / "ft"
    data_dir.mkdir(parents=True)
    _write(data_dir / "ft_request_param_train.jsonl", [GOOD, GOOD | {"request_text": "a second tune"}])
    _write(data_dir / "ft_request_param_valid.jsonl", [GOOD | {"request_text": "held out"}])
    asked = {}

    def fake_snapshot_download(**kwargs):
        asked.update(kwargs)
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    data = load_hub("someone/kotone-like")
    assert asked["repo_id"] == "someone/kotone-like" and asked["repo_type"] == "dataset"
    assert (len(data.train), len(data.valid), len(data.test)) == (2, 1, 0)


def _hub_snapshot(tmp_path, monkeypatch, files: dict[str, list]) -> dict:
    """Offline stand-in for the Hub download: a local folder laid out like the published dataset."""
    import huggingface_hub

    data_dir = tmp_path / "snapshot" / "data" / "ft"
    data_dir.mkdir(parents=True)
    for name, records in files.items():
        _write(data_dir / name, records)
    asked = {}

    def fake_snapshot_download(**kwargs):
        asked.update(kwargs)
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    return asked


def test_the_hub_loader_refuses_a_request_in_two_splits(tmp_path, monkeypatch):
    from tools.data.dataset import load_hub

    _hub_snapshot(
        tmp_path,
        monkeypatch,
        {
            "ft_request_param_train.jsonl": [GOOD, GOOD | {"request_text": "a second tune"}],
            "ft_request_param_valid.jsonl": [GOOD | {"request_text": "A second tune!"}],
        },
    )
    with pytest.raises(SplitLeakError, match="'train' and 'valid'"):
        load_hub("someone/kotone-like")


def test_the_hub_loader_reads_a_test_split_and_names_the_dataset(tmp_path, monkeypatch):
    from tools.data.dataset import load_dataset

    asked = _hub_snapshot(
        tmp_path,
        monkeypatch,
        {
            "ft_request_param_train.jsonl": [GOOD],
            "ft_request_param_valid.jsonl": [GOOD | {"request_text": "held out"}],
            "ft_request_param_test.jsonl": [
                GOOD | {"request_text": "tested"},
                GOOD | {"request_text": "too"},
            ],
        },
    )
    data = load_dataset("hub:someone/kotone-like")
    assert asked == {
        "repo_id": "someone/kotone-like",
        "repo_type": "dataset",
        "revision": None,
        "allow_patterns": ["*.jsonl"],
    }
    assert data.name == "someone/kotone-like"
    assert [len(data.split(s)) for s in ("train", "valid", "test")] == [1, 1, 2]
    assert data.test[0].request_text == "tested"


def test_the_hub_loader_needs_train_and_valid(tmp_path, monkeypatch):
    from tools.data.dataset import load_hub

    _hub_snapshot(tmp_path, monkeypatch, {"ft_request_param_train.jsonl": [GOOD]})
    with pytest.raises(
        DatasetError, match=r"^someone/x: no train/valid JSONL files found \(\['ft_request_param_train'\]\)$"
    ):
        load_hub("someone/x")


def test_the_same_request_twice_in_one_split_is_not_a_leak(tmp_path):
    _write(tmp_path / "train.jsonl", [GOOD, GOOD])
    _write(tmp_path / "valid.jsonl", [GOOD | {"request_text": "held out"}])
    data = load_dir(tmp_path, name="named")
    assert (data.name, len(data.train), len(data.valid), data.test) == ("named", 2, 1, [])
    assert load_dir(tmp_path).name == tmp_path.name


def test_a_leak_into_the_test_split_is_refused_too(tmp_path):
    _write(tmp_path / "train.jsonl", [GOOD])
    _write(tmp_path / "valid.jsonl", [GOOD | {"request_text": "held out"}])
    _write(tmp_path / "test.jsonl", [GOOD | {"request_text": "HELD  out."}])
    with pytest.raises(SplitLeakError, match=r"^request appears in both 'valid' and 'test': 'HELD  out\.'$"):
        load_dir(tmp_path)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"train.jsonl": [GOOD]}, "missing valid.jsonl"),
        ({"valid.jsonl": [GOOD]}, "missing train.jsonl"),
        ({"train.jsonl": [GOOD], "valid.jsonl": [""]}, "valid.jsonl: no rows (the valid split is empty)"),
    ],
)
def test_a_folder_without_both_train_and_valid_rows_is_refused(tmp_path, files, message):
    for name, records in files.items():
        _write(tmp_path / name, records)
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_dir(tmp_path)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found: .*nowhere"):
        load_dir(tmp_path / "nowhere")


def test_the_flat_project_format_and_its_origin_are_read(tmp_path):
    flat = {"request_text": "flat row here", "source_type": "rule_prompt", "origin": "teacher:x"}
    flat["target"] = GOOD["target_hidden_params"]["vector"]
    rows = load_jsonl(_write(tmp_path / "train.jsonl", [flat, GOOD]))
    assert rows[0].origin == "teacher:x" and rows[0].source_type is SourceType.rule_prompt
    assert rows[0].target.as_list() == [2, 7, 3, 8, 4, 6]
    assert rows[1].origin == "dataset"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"request_text": "x", "source_type": "request_text"},
            "no target (expected target_hidden_params.vector or target)",
        ),
        (
            GOOD | {"target_hidden_params": {"vector": [1, 2]}},
            "target_hidden_params.vector is missing or not an object",
        ),
        (GOOD | {"target_hidden_params": [1]}, "target_hidden_params.vector is missing or not an object"),
        (
            GOOD
            | {"target_hidden_params": {"vector": GOOD["target_hidden_params"]["vector"] | {"warmth": True}}},
            "target warmth=True is not an integer",
        ),
        (
            GOOD | {"target_hidden_params": {"vector": {"energy": 1, "warmth": 2}}},
            "target is missing brightness, acousticness, complexity, nostalgia",
        ),
        (
            GOOD | {"request_text": "   "},
            "request_text: Value error, request_text is blank (only whitespace)",
        ),
        (GOOD | {"source_type": "tweet"}, "source_type: Input should be 'rule_prompt' or 'request_text'"),
        (
            {k: v for k, v in GOOD.items() if k != "request_text"},
            "request_text: String should have at least 1 character",
        ),
        (
            {k: v for k, v in GOOD.items() if k != "source_type"},
            "source_type: Input should be 'rule_prompt' or 'request_text'",
        ),
        ({"request_text": "x", "source_type": "request_text", "target": 5}, "target is not an object"),
        ({"request_text": "x", "source_type": "request_text", "target": None}, "target is not an object"),
        (
            {"request_text": "x", "source_type": "request_text", "target": "energy warmth"},
            "target is not an object",
        ),
    ],
)
def test_each_malformed_row_gets_one_line_naming_the_problem(tmp_path, bad, message):
    path = _write(tmp_path / "train.jsonl", [bad])
    with pytest.raises(DatasetError) as error:
        load_jsonl(path)
    assert str(error.value) == f"{path}:1: {message}"


def test_invalid_json_and_bytes_that_are_not_utf8_name_the_column_and_byte(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + '{"a": }' + "\n")
    with pytest.raises(
        DatasetError, match=re.escape(f"{path}:2: invalid JSON (Expecting value at column 7)")
    ):
        load_jsonl(path)
    path.write_bytes(b'{"request_text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=re.escape(f"{path}:1: not UTF-8 text (byte 0xe9 at byte 22)")):
        load_jsonl(path)


def test_text_keys_and_data_hashes_identify_content():
    assert normalise_text("  A calm,   tune!! ") == "a calm tune"
    assert text_key("A calm, tune!") == text_key("a calm tune") != text_key("a calm tone")
    assert len(text_key("x")) == 12 and int(text_key("x"), 16) >= 0
    row = TrainingRow(
        request_text="tune", source_type=SourceType.rule_prompt, target=ParamVector.from_list([1] * 6)
    )
    other_target = row.model_copy(update={"target": ParamVector.from_list([2] * 6)})
    other_source = row.model_copy(update={"source_type": SourceType.request_text})
    other_text = row.model_copy(update={"request_text": "tone"})
    hashes = {data_hash([r]) for r in (row, other_target, other_source, other_text)}
    assert len(hashes) == 4 and all(len(h) == 16 for h in hashes)
    assert data_hash([row.model_copy(update={"origin": "teacher:x"})]) == data_hash([row])


def test_rows_are_written_with_their_origin_and_chat_messages(tmp_path):
    from tools.core.prompting import render_system_prompt

    row = TrainingRow(
        request_text="a café tune",
        source_type=SourceType.rule_prompt,
        target=ParamVector.from_list([1] * 6),
        origin="replay:abc",
    )
    write_jsonl(tmp_path / "rows.jsonl", [row])
    record = json.loads((tmp_path / "rows.jsonl").read_text())
    assert record["origin"] == "replay:abc" and record["source_type"] == "rule_prompt"
    assert record["messages"] == [
        {"role": "system", "content": render_system_prompt()},
        {"role": "user", "content": "a café tune"},
        {"role": "assistant", "content": row.target.to_json()},
    ]
    assert "a café tune" in (tmp_path / "rows.jsonl").read_text(
        encoding="utf-8"
    )  # written as text, not escaped
    assert load_jsonl(tmp_path / "rows.jsonl") == [row]


def test_a_leak_message_quotes_the_first_80_characters(tmp_path):
    long_text = "a long request " + "x" * 100
    _write(tmp_path / "train.jsonl", [GOOD | {"request_text": long_text}])
    _write(tmp_path / "valid.jsonl", [GOOD | {"request_text": long_text}])
    with pytest.raises(SplitLeakError) as error:
        load_dir(tmp_path)
    assert str(error.value).endswith(f": {long_text[:80]!r}")


def test_load_dataset_names_each_source(tmp_path, monkeypatch):
    from tools.data import dataset

    for name in ("shipped", "real", "folder"):
        (tmp_path / name).mkdir()
        _write(tmp_path / name / "train.jsonl", [GOOD | {"request_text": f"{name} train"}])
        _write(tmp_path / name / "valid.jsonl", [GOOD | {"request_text": f"{name} valid"}])
    monkeypatch.setattr(dataset, "SHIPPED_DATA_DIR", tmp_path / "shipped")
    monkeypatch.setattr(dataset, "REAL_DATA_DIR", tmp_path / "real")
    loaded = {spec: dataset.load_dataset(spec) for spec in ("shipped", "real", str(tmp_path / "folder"))}
    assert {spec: (d.name, d.train[0].request_text) for spec, d in loaded.items()} == {
        "shipped": ("kotone-shipped", "shipped train"),
        "real": ("kotone-ft", "real train"),
        str(tmp_path / "folder"): ("folder", "folder train"),
    }


def test_hub_without_an_id_reads_the_published_dataset_at_the_revision_asked(tmp_path, monkeypatch):
    from tools.data.dataset import HUB_DATASET_ID, load_dataset, load_hub

    asked = _hub_snapshot(
        tmp_path,
        monkeypatch,
        {
            "ft_request_param_train.jsonl": [GOOD],
            "ft_request_param_valid.jsonl": [GOOD | {"request_text": "v"}],
        },
    )
    assert load_dataset("hub").name == HUB_DATASET_ID and asked["repo_id"] == HUB_DATASET_ID
    load_hub("someone/x", revision="abc123")
    assert asked["revision"] == "abc123"
