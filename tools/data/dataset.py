"""Loading request -> params rows: kotone-ft JSONL files, the Hugging Face Hub, the project's shipped data.

Every loader returns `TrainingRow`s.  A malformed row raises `DatasetError` naming file and line; a row that
appears in two splits raises `SplitLeakError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError

from tools.core.paths import PROJECT_ROOT
from tools.core.schema import DIMS, ParamVector, TrainingRow

SHIPPED_DATA_DIR = PROJECT_ROOT / "data" / "kotone"
REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "kotone-ft"
HUB_DATASET_ID = "Haruk1y/atelier-kotone-ft-request-hidden"
SPLITS = ("train", "valid", "test")


class DatasetError(ValueError):
    """A row could not be read; the message names the file and the 1-based line."""


class SplitLeakError(ValueError):
    """The same request text appears in two splits."""


def normalise_text(text: str) -> str:
    """Lower-case, collapse whitespace and punctuation: the key for exact-duplicate checks."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def text_key(text: str) -> str:
    """A short stable id of a request (its normalised text): fold assignment and replay provenance."""
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()[:12]


def parse_record(record: object, where: str) -> TrainingRow:
    """Accept the kotone-ft format (`target_hidden_params.vector`) or the flat project format (`target`)."""
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    try:
        if "target_hidden_params" in record:
            vector = record["target_hidden_params"]
            vector = vector.get("vector") if isinstance(vector, dict) else None
            if not isinstance(vector, dict):
                raise DatasetError(f"{where}: target_hidden_params.vector is missing or not an object")
        elif "target" in record:
            vector = record["target"]
            if not isinstance(vector, dict):
                raise DatasetError(f"{where}: target is not an object")
        else:
            raise DatasetError(f"{where}: no target (expected target_hidden_params.vector or target)")
        missing = [d for d in DIMS if d not in vector]
        if missing:
            raise DatasetError(f"{where}: target is missing {', '.join(missing)}")
        for d in DIMS:
            if isinstance(vector[d], bool) or not isinstance(vector[d], int):
                raise DatasetError(f"{where}: target {d}={vector[d]!r} is not an integer")
        return TrainingRow(
            request_text=record.get("request_text", ""),
            source_type=record.get("source_type", ""),
            target=ParamVector(**{d: vector[d] for d in DIMS}),
            origin=record.get("origin", "dataset"),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise DatasetError(f"{where}: {loc}: {first['msg']}") from None


def load_jsonl(path: str | os.PathLike[str]) -> list[TrainingRow]:
    """Read one JSONL file; blank lines are skipped, anything else malformed is an error with file:line."""
    path = Path(path)
    rows: list[TrainingRow] = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})"
            ) from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        rows.append(parse_record(record, where))
    return rows


def row_to_record(row: TrainingRow) -> dict:
    """The kotone-ft on-disk format (with the chat messages), plus our `origin` tag."""
    from tools.core.prompting import render_system_prompt

    return {
        "source_type": row.source_type.value,
        "request_text": row.request_text,
        "target_hidden_params": {"vector": row.target.model_dump()},
        "messages": [
            {"role": "system", "content": render_system_prompt()},
            {"role": "user", "content": row.request_text},
            {"role": "assistant", "content": row.target.to_json()},
        ],
        "origin": row.origin,
    }


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[TrainingRow]) -> None:
    """Atomic write (temp file + rename) of rows in the kotone-ft format."""
    from tools.core.atomic import atomic_write_text

    text = "".join(json.dumps(row_to_record(r), ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(Path(path), text)


def data_hash(rows: Sequence[TrainingRow]) -> str:
    """Content hash of rows (order-sensitive): identifies a dataset in records and tracking."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.request_text.encode())
        digest.update(bytes(row.target.as_list()))
        digest.update(row.source_type.value.encode())
    return digest.hexdigest()[:16]


def check_no_leak(splits: dict[str, Sequence[TrainingRow]]) -> None:
    """Refuse a request text (normalised) that appears in more than one split."""
    seen: dict[str, str] = {}
    for name, rows in splits.items():
        for row in rows:
            key = normalise_text(row.request_text)
            other = seen.get(key)
            if other is not None and other != name:
                raise SplitLeakError(
                    f"request appears in both {other!r} and {name!r}: {row.request_text[:80]!r}"
                )
            seen[key] = name


class DatasetSplits(BaseModel):
    """A dataset with named splits. `test` may be absent (the real kotone-ft keeps it outside)."""

    name: str
    train: list[TrainingRow]
    valid: list[TrainingRow]
    test: list[TrainingRow] = []

    def split(self, name: str) -> list[TrainingRow]:
        return getattr(self, name)


def load_dir(directory: str | os.PathLike[str], name: str | None = None) -> DatasetSplits:
    """Read train/valid(/test).jsonl from a folder and check that no request leaks across splits."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {directory}")
    found = {s: load_jsonl(directory / f"{s}.jsonl") for s in SPLITS if (directory / f"{s}.jsonl").exists()}
    for required in ("train", "valid"):
        if required not in found:
            raise DatasetError(f"{directory}: missing {required}.jsonl")
        if not found[required]:
            raise DatasetError(f"{directory / f'{required}.jsonl'}: no rows (the {required} split is empty)")
    check_no_leak(found)
    return DatasetSplits(name=name or directory.name, **found)


def load_hub(dataset_id: str = HUB_DATASET_ID, revision: str | None = None) -> DatasetSplits:
    """Download the kotone-ft JSONL files from the Hugging Face Hub (online only) and load them."""
    from huggingface_hub import snapshot_download

    local = snapshot_download(
        repo_id=dataset_id, repo_type="dataset", revision=revision, allow_patterns=["*.jsonl"]
    )
    files = {p.stem: p for p in Path(local).rglob("*.jsonl")}
    splits: dict[str, list[TrainingRow]] = {}
    for split in SPLITS:
        match = next((p for stem, p in files.items() if stem.endswith(split)), None)
        if match is not None:
            splits[split] = load_jsonl(match)
    if "train" not in splits or "valid" not in splits:
        raise DatasetError(f"{dataset_id}: no train/valid JSONL files found ({sorted(files)})")
    check_no_leak(splits)
    return DatasetSplits(name=dataset_id, **splits)


def load_dataset(spec: str) -> DatasetSplits:
    """`shipped` (default data under data/kotone), `real` (../shared/kotone-ft), `hub[:id]`, or a folder path."""
    if spec == "shipped":
        return load_dir(SHIPPED_DATA_DIR, name="kotone-shipped")
    if spec == "real":
        return load_dir(REAL_DATA_DIR, name="kotone-ft")
    if spec == "hub" or spec.startswith("hub:"):
        return load_hub(spec.partition(":")[2] or HUB_DATASET_ID)
    return load_dir(spec)
