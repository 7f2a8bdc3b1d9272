"""The offline tracking store: runs parsed from the record logs under WANDB_DIR, traces from the local
SQLite trace store."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tools.tracking.call_filters import CallFilters, call_matches
from tools.tracking.env import TrackingSettings
from tools.tracking.run_filters import run_matches
from tools.tracking.store_models import (
    RunHistory,
    RunInfo,
    RunNotFoundError,
    RunTable,
    TableNotFoundError,
    TraceCall,
    select_history,
    trace_call_from_record,
)
from tools.tracking.trace_db import call_from_row, connect
from tools.tracking.wandb_records import OfflineRun, RunLogIncomplete, find_run_logs, read_offline_run


class LocalTrackingStore:
    """Offline runs under WANDB_DIR (parsed record logs) and traces in the local SQLite trace store."""

    _cache: dict[Path, tuple[tuple[int, int], OfflineRun]] = {}
    _cache_lock = threading.Lock()

    def __init__(self, settings: TrackingSettings):
        self.entity, self.project = settings.entity, settings.project
        self._wandb_dir = settings.wandb_dir
        self._weave_db = settings.weave_db

    # -- runs ----------------------------------------------------------------------------------
    def _offline_runs(self) -> list[OfflineRun]:
        runs = []
        for path in find_run_logs(self._wandb_dir):
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            with self._cache_lock:
                cached = self._cache.get(path)
            if cached is None or cached[0] != key:
                try:
                    cached = (key, read_offline_run(path))
                except RunLogIncomplete:
                    continue  # a run that is just starting; listed once its run record is written
                with self._cache_lock:
                    self._cache[path] = cached
            run = cached[1]
            # A run logged without an entity (the offline default) belongs to whichever entity reads it.
            if run.entity in ("", self.entity) and run.project == self.project:
                runs.append(run)
        return runs

    def _info(self, run: OfflineRun) -> RunInfo:
        return RunInfo(
            id=run.run_id,
            name=run.name,
            entity=run.entity or self.entity,
            project=run.project,
            group=run.group,
            job_type=run.job_type,
            state=run.state,
            tags=run.tags,
            created_at=run.start_time,
            config=run.config,
            summary=run.summary,
        )

    def _offline_run(self, run_id: str) -> OfflineRun:
        for run in self._offline_runs():
            if run.run_id == run_id:
                return run
        raise RunNotFoundError(f"run {run_id!r} not found in {self.entity}/{self.project}")

    def list_runs(self, filters: dict[str, Any] | None = None) -> list[RunInfo]:
        runs = [self._info(r) for r in self._offline_runs()]
        return [r for r in runs if run_matches(r, filters or {})]

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._offline_run(run_id))

    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory:
        run = self._offline_run(run_id)
        return select_history(self._info(run), run.history, keys)

    def get_table(self, run_id: str, key: str) -> RunTable:
        run = self._offline_run(run_id)
        ref = run.summary.get(key)
        if not isinstance(ref, dict) or ref.get("_type") not in ("table-file", "table"):
            raise TableNotFoundError(f"run {run_id!r} has no table {key!r}")
        files_dir = (run.path.parent / "files").resolve()
        table_path = (files_dir / ref["path"]).resolve()
        if not table_path.is_relative_to(files_dir) or not table_path.is_file():
            raise TableNotFoundError(f"table file for {key!r} of run {run_id!r} is missing")
        table = json.loads(table_path.read_text(encoding="utf-8"))
        columns = list(table["columns"])
        rows = [dict(zip(columns, row, strict=True)) for row in table["data"]]
        return RunTable(run_id=run_id, key=key, columns=columns, rows=rows)

    # -- traces --------------------------------------------------------------------------------
    def _calls(self, filters: CallFilters) -> list[TraceCall]:
        """Calls of this project; the selective filters run in SQL, the rest in `call_matches`."""
        if not self._weave_db.is_file():
            return []
        where, params = ["project_id=?", "deleted_at IS NULL"], [f"{self.entity}/{self.project}"]
        if filters.trace_roots_only:
            where.append("parent_id IS NULL")
        if filters.op_name_contains:
            where.append("instr(op_name, ?) > 0")
            params.append(filters.op_name_contains)
        for column, values in (
            ("id", filters.call_ids),
            ("parent_id", filters.parent_ids),
            ("trace_id", filters.trace_ids or ([filters.trace_id] if filters.trace_id else None)),
        ):
            if values is not None:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        conn = connect(self._weave_db, read_only=True)
        try:
            rows = conn.execute(
                f"SELECT * FROM calls WHERE {' AND '.join(where)} ORDER BY started_at, id", params
            ).fetchall()
        finally:
            conn.close()
        return [trace_call_from_record(call_from_row(r)) for r in rows]

    def query_calls(
        self, filters: CallFilters | None = None, limit: int | None = None, sort_direction: str = "desc"
    ) -> list[TraceCall]:
        filters = filters or CallFilters()
        calls = [c for c in self._calls(filters) if call_matches(c, filters)]
        if sort_direction == "desc":
            calls.reverse()
        return calls if limit is None else calls[:limit]

    def count_calls(self, filters: CallFilters | None = None) -> int:
        return len(self.query_calls(filters))
