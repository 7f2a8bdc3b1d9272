"""Read an offline wandb run (`run-<id>.wandb`) with wandb's own protobuf schema.

File format (wandb 0.31, a LevelDB-style log): a 7-byte header `:W&B`, magic 0xBEE1 (little
endian), version 0; then 32 KiB blocks of chunks, each `crc32 (4) | length (2, LE) | type (1)`
followed by `length` bytes; type FULL=1 or FIRST=2 / MIDDLE=3 / LAST=4 for a record split over
blocks. A block tail shorter than a chunk header is zero padding. Each assembled record is a
serialized `wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbLogError(ValueError):
    """The file is not a readable wandb record log."""


class RunLogIncomplete(WandbLogError):
    """The log has no run record yet: the run is still starting (or its writer has not flushed)."""


class OfflineRun(BaseModel):
    """Everything a run log records that the tracking store serves."""

    run_id: str
    path: Path
    entity: str = ""
    project: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = []
    start_time: str | None = None
    state: str = "running"
    exit_code: int | None = None
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = Field(default_factory=list)


def iter_record_bytes(path: Path) -> Iterator[bytes]:
    """Yield each record's serialized bytes; a torn final record (run still writing) is skipped."""
    data = path.read_bytes()
    if data[: len(HEADER)] != HEADER:
        raise WandbLogError(f"{path}: not a wandb record log (bad header)")
    pos, pending = len(HEADER), bytearray()
    while pos + CHUNK_HEADER_SIZE <= len(data):
        block_left = BLOCK_SIZE - pos % BLOCK_SIZE
        if block_left < CHUNK_HEADER_SIZE:
            pos += block_left
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        start = pos + CHUNK_HEADER_SIZE
        payload = data[start : start + length]
        if len(payload) < length:
            return
        if crc == 0 and length == 0 and kind == 0:  # padding up to the next block
            pos += block_left
            continue
        if zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF != crc:
            raise WandbLogError(f"{path}: checksum mismatch at byte {pos}")
        pos = start + length
        if kind == FULL:
            yield bytes(payload)
        elif kind == FIRST:
            pending = bytearray(payload)
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            pending += payload
            yield bytes(pending)
            pending = bytearray()
        else:
            raise WandbLogError(f"{path}: unknown chunk type {kind} at byte {pos}")


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    field = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if field is None or field == "none":
        return None
    if field == "json":
        return json.loads(item.json)
    return getattr(item, field)


def _item_path(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _set_path(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _remove_path(target: dict[str, Any], keys: list[str]) -> None:
    for key in keys[:-1]:
        target = target.get(key, {})
    target.pop(keys[-1], None)


def read_offline_run(path: Path) -> OfflineRun:
    """Replay the run log: config and summary updates merged in order, history rows in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    run: OfflineRun | None = None
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    state, exit_code = "running", None
    for raw in iter_record_bytes(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run = OfflineRun(
                run_id=r.run_id,
                path=path,
                entity=r.entity,
                project=r.project,
                name=r.display_name,
                group=r.run_group,
                job_type=r.job_type,
                tags=list(r.tags),
                start_time=r.start_time.ToJsonString() if r.HasField("start_time") else None,
            )
            for item in r.config.update:
                _set_path(config, _item_path(item), _item_value(item))
        elif kind == "config":
            for item in record.config.update:
                _set_path(config, _item_path(item), _item_value(item))
            for item in record.config.remove:
                _remove_path(config, _item_path(item))
        elif kind == "summary":
            for item in record.summary.update:
                _set_path(summary, _item_path(item), _item_value(item))
            for item in record.summary.remove:
                _remove_path(summary, _item_path(item))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set_path(row, _item_path(item), _item_value(item))
            if record.history.HasField("step"):
                row.setdefault("_step", record.history.step.num)
            history.append(row)
        elif kind == "exit":
            exit_code = record.exit.exit_code
            state = "finished" if exit_code == 0 else "failed"
    if run is None:
        raise RunLogIncomplete(f"{path}: no run record")
    config.pop("_wandb", None)
    summary.pop("_wandb", None)
    return run.model_copy(
        update={
            "config": config,
            "summary": summary,
            "history": history,
            "state": state,
            "exit_code": exit_code,
        }
    )


def has_exit_record(path: Path) -> bool:
    """True once the run's writer has recorded its exit (the log is complete)."""
    from wandb.proto import wandb_internal_pb2 as pb

    for raw in iter_record_bytes(path):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "exit":
            return True
    return False


def find_run_logs(wandb_dir: Path) -> list[Path]:
    """Every `run-*.wandb` under `<WANDB_DIR>/wandb/`, oldest first."""
    root = wandb_dir / "wandb"
    if not root.is_dir():
        return []
    return sorted(root.glob("*run-*/run-*.wandb"), key=lambda p: p.parent.name.split("-", 2)[-1])
