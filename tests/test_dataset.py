"""Loading rows: the kotone-ft format, clear errors with file and line, no request in two splits."""

import json

import pytest

from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import (
    REAL_DATA_DIR,
    DatasetError,
    SplitLeakError,
    data_hash,
    load_dir,
    load_jsonl,
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
        ([1, 2], "expected a JSON object"),
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
