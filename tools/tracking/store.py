"""Reading tracked runs and traces back: one interface, a local (offline files) and a cloud implementation."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.tracking.env import TrackingSettings, tracking_settings
from tools.tracking.trace_db import call_from_row, connect, op_short_name
from tools.tracking.wandb_records import OfflineRun, RunLogIncomplete, find_run_logs, read_offline_run


class RunNotFoundError(LookupError):
    pass


class TableNotFoundError(LookupError):
    pass


class RunFilters(BaseModel):
    """Which runs to list; every given field must match."""

    model_config = ConfigDict(extra="forbid")

    group: str | None = Field(None, description="run group (the loop uses cycle_<N>)")
    job_type: str | None = Field(None, description="train / eval")
    state: str | None = Field(None, description="running / finished / failed")
    name_contains: str | None = Field(None, description="substring of the run's display name")
    config: dict[str, Any] = Field(
        default_factory=dict, description="config key -> required value (top level)"
    )


class RunInfo(BaseModel):
    id: str
    name: str
    entity: str
    project: str
    group: str
    job_type: str
    state: str
    tags: list[str] = []
    created_at: str | None = None
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}


class RunHistory(BaseModel):
    run_id: str
    run_name: str
    rows: list[dict[str, Any]]
    keys: list[str]
    total_steps: int


class RunTable(BaseModel):
    run_id: str
    key: str
    columns: list[str]
    rows: list[dict[str, Any]]


FieldCondition = (
    Any  # a literal (equality) or {"$eq" | "$gt" | "$gte" | "$lt" | "$lte" | "$contains": operand}
)


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime | None = Field(None, description="ISO datetime; calls started at or after it")
    end: datetime | None = Field(None, description="ISO datetime; calls started before it")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class CallFilters(BaseModel):
    """Trace filters, named and read as the official W&B MCP server's `filters` argument."""

    model_config = ConfigDict(extra="forbid")

    op_name: str | None = Field(
        None, description='exact op name (full ref or short name); "*" for a substring'
    )
    op_name_contains: str | None = None
    display_name: str | None = Field(None, description='exact display name; "*" for a substring')
    display_name_contains: str | None = None
    trace_id: str | None = None
    trace_ids: list[str] | None = None
    call_ids: list[str] | None = Field(None, description="call (span) ids; a single id is accepted too")
    parent_ids: list[str] | None = Field(None, description="children of these call ids")
    trace_roots_only: bool | None = None
    status: Literal["success", "error", "running"] | None = None
    has_exception: bool | None = None
    time_range: TimeRange | None = Field(None, description='{"start": ISO, "end": ISO} on started_at')
    latency: dict[Literal["$gt", "$gte", "$lt", "$lte", "$eq"], float] | None = Field(
        None, description='summary.weave.latency_ms bounds, e.g. {"$gt": 500}'
    )
    attributes: dict[str, FieldCondition] | None = Field(
        None, description='dot path -> value or {"$gt"|"$gte"|"$lt"|"$lte"|"$eq"|"$contains": v}'
    )
    inputs: dict[str, FieldCondition] | None = Field(
        None, description="dot path into the inputs -> as attributes"
    )
    output: dict[str, FieldCondition] | None = Field(
        None, description="dot path into the output -> as attributes"
    )
    wb_run_id: str | dict[Literal["$contains"], str] | None = Field(
        None, description='"entity/project/run_id" (or the bare run id), or {"$contains": text}'
    )

    _lists = field_validator("call_ids", "parent_ids", "trace_ids", mode="before")(_as_list)


class TraceCall(BaseModel):
    id: str
    project_id: str
    trace_id: str
    parent_id: str | None
    op_name: str
    display_name: str | None
    started_at: str
    ended_at: str | None
    attributes: dict[str, Any]
    inputs: dict[str, Any]
    output: Any
    summary: dict[str, Any]
    exception: str | None
    wb_run_id: str | None = None
    status: str
    latency_ms: int | None


class TrackingStore(Protocol):
    entity: str
    project: str

    def list_runs(self, filters: RunFilters | None = None) -> list[RunInfo]: ...
    def get_run(self, run_id: str) -> RunInfo: ...
    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory: ...
    def get_table(self, run_id: str, key: str) -> RunTable: ...
    def query_calls(
        self, filters: CallFilters | None = None, limit: int | None = None, sort_direction: str = "desc"
    ) -> list[TraceCall]: ...
    def count_calls(self, filters: CallFilters | None = None) -> int: ...


def _run_matches(run: RunInfo, filters: RunFilters) -> bool:
    return (
        (filters.group is None or run.group == filters.group)
        and (filters.job_type is None or run.job_type == filters.job_type)
        and (filters.state is None or run.state == filters.state)
        and (filters.name_contains is None or filters.name_contains in run.name)
        and all(run.config.get(k) == v for k, v in filters.config.items())
    )


def _select_history(run: RunInfo, rows: list[dict[str, Any]], keys: list[str] | None) -> RunHistory:
    wanted = set(keys or [])
    selected = []
    for row in rows:
        values = {
            k: v
            for k, v in row.items()
            if (not wanted or k in wanted)
            and not (k.startswith("_") and k != "_step")
            and not isinstance(v, dict)
        }
        if any(k != "_step" for k in values):
            values.setdefault("_step", row.get("_step"))
            selected.append(values)
    present = sorted({k for r in selected for k in r if k != "_step"})
    last_step = max((r.get("_step") or 0 for r in rows), default=0)
    return RunHistory(run_id=run.id, run_name=run.name, rows=selected, keys=present, total_steps=last_step)


def _get_path(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda value, operand: value == operand,
    "$gt": lambda value, operand: value > operand,
    "$gte": lambda value, operand: value >= operand,
    "$lt": lambda value, operand: value < operand,
    "$lte": lambda value, operand: value <= operand,
}


def _satisfies(value: Any, condition: FieldCondition) -> bool:
    if not (isinstance(condition, dict) and len(condition) == 1 and next(iter(condition)).startswith("$")):
        return value == condition
    ((operator, operand),) = condition.items()
    if operator == "$contains":
        return isinstance(value, str) and str(operand).lower() in value.lower()
    if operator not in _BOUNDS:
        raise ValueError(f"unsupported operator {operator!r}; supported: {', '.join(_BOUNDS)}, $contains")
    try:
        return value is not None and _BOUNDS[operator](value, operand)
    except TypeError:
        return False


def _name_matches(pattern: str, *names: str) -> bool:
    if "*" in pattern:
        needle = pattern.replace(".*", "").replace("*", "")
        return any(needle in name for name in names)
    return pattern in names


def _run_id_matches(wb_run_id: str | None, wanted: str | dict[str, str]) -> bool:
    if wb_run_id is None:
        return False
    if isinstance(wanted, dict):
        return wanted["$contains"] in wb_run_id
    return wb_run_id == wanted or wb_run_id.endswith(f"/{wanted}")


def _started_within(started_at: str, window: TimeRange) -> bool:
    started = datetime.fromisoformat(started_at)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)

    def aware(moment: datetime) -> datetime:
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    return (window.start is None or started >= aware(window.start)) and (
        window.end is None or started < aware(window.end)
    )


def call_matches(call: TraceCall, filters: CallFilters) -> bool:
    short = op_short_name(call.op_name)
    display = call.display_name or ""
    checks = [
        filters.op_name is None or _name_matches(filters.op_name, call.op_name, short),
        filters.op_name_contains is None or filters.op_name_contains in call.op_name,
        filters.display_name is None or _name_matches(filters.display_name, display, short),
        filters.display_name_contains is None or filters.display_name_contains in display,
        filters.trace_id is None or call.trace_id == filters.trace_id,
        filters.trace_ids is None or call.trace_id in filters.trace_ids,
        filters.call_ids is None or call.id in filters.call_ids,
        filters.parent_ids is None or call.parent_id in filters.parent_ids,
        not filters.trace_roots_only or call.parent_id is None,
        filters.status is None or call.status == filters.status,
        filters.has_exception is None or (call.exception is not None) == filters.has_exception,
        filters.time_range is None or _started_within(call.started_at, filters.time_range),
        filters.wb_run_id is None or _run_id_matches(call.wb_run_id, filters.wb_run_id),
    ]
    if filters.latency:
        checks.append(all(_satisfies(call.latency_ms, {op: b}) for op, b in filters.latency.items()))
    for source, conditions in (
        (call.attributes, filters.attributes),
        (call.inputs, filters.inputs),
        (call.output, filters.output),
    ):
        for path, condition in (conditions or {}).items():
            checks.append(_satisfies(_get_path(source, path), condition))
    return all(checks)


def _trace_call(call: dict[str, Any]) -> TraceCall:
    weave_block = call["summary"].get("weave", {})
    return TraceCall(
        **{k: call[k] for k in TraceCall.model_fields if k in call and k not in ("status", "latency_ms")},
        status=weave_block.get("status", "running"),
        latency_ms=weave_block.get("latency_ms"),
    )


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

    def list_runs(self, filters: RunFilters | None = None) -> list[RunInfo]:
        filters = filters or RunFilters()
        runs = [self._info(r) for r in self._offline_runs()]
        return [r for r in runs if _run_matches(r, filters)]

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._offline_run(run_id))

    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory:
        run = self._offline_run(run_id)
        return _select_history(self._info(run), run.history, keys)

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
        return [_trace_call(call_from_row(r)) for r in rows]

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


class CloudTrackingStore:
    """W&B cloud: runs through `wandb.Api()`, traces through the Weave client (online mode only)."""

    def __init__(self, settings: TrackingSettings):
        import wandb

        self._api = wandb.Api(timeout=30)
        self.entity = settings.wandb_entity or self._api.default_entity
        self.project = settings.project
        self._settings = settings

    def _path(self, run_id: str | None = None) -> str:
        base = f"{self.entity}/{self.project}"
        return base if run_id is None else f"{base}/{run_id}"

    @staticmethod
    def _info(run: Any) -> RunInfo:
        return RunInfo(
            id=run.id,
            name=run.name or "",
            entity=run.entity,
            project=run.project,
            group=run.group or "",
            job_type=run.job_type or "",
            state=run.state,
            tags=list(run.tags or []),
            created_at=str(run.created_at) if run.created_at else None,
            config={k: v for k, v in dict(run.config).items() if not k.startswith("_")},
            summary=dict(run.summary),
        )

    def _run(self, run_id: str) -> Any:
        import wandb

        try:
            return self._api.run(self._path(run_id))
        except wandb.errors.CommError as exc:
            raise RunNotFoundError(f"run {run_id!r} not found in {self._path()}: {exc}") from exc

    def list_runs(self, filters: RunFilters | None = None) -> list[RunInfo]:
        filters = filters or RunFilters()
        query: dict[str, Any] = {f"config.{k}": v for k, v in filters.config.items()}
        if filters.group is not None:
            query["group"] = filters.group
        if filters.job_type is not None:
            query["jobType"] = filters.job_type
        runs = [self._info(r) for r in self._api.runs(self._path(), filters=query or None)]
        return [r for r in runs if _run_matches(r, filters)]

    def get_run(self, run_id: str) -> RunInfo:
        return self._info(self._run(run_id))

    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory:
        run = self._run(run_id)
        rows = list(run.scan_history(keys=keys)) if keys else list(run.scan_history())
        return _select_history(self._info(run), rows, keys)

    def get_table(self, run_id: str, key: str) -> RunTable:
        run = self._run(run_id)
        ref = run.summary.get(key)
        if not isinstance(ref, dict) or "path" not in ref:
            raise TableNotFoundError(f"run {run_id!r} has no table {key!r}")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = run.file(ref["path"]).download(root=tmp, replace=True)
            table = json.loads(Path(local.name).read_text(encoding="utf-8"))
        columns = list(table["columns"])
        return RunTable(
            run_id=run_id,
            key=key,
            columns=columns,
            rows=[dict(zip(columns, r, strict=True)) for r in table["data"]],
        )

    def query_calls(
        self, filters: CallFilters | None = None, limit: int | None = None, sort_direction: str = "desc"
    ) -> list[TraceCall]:
        from tools.tracking.weave_logger import weave_client

        filters = filters or CallFilters()
        client = weave_client(self._settings)
        server_filter: dict[str, Any] = {}
        if filters.trace_roots_only:
            server_filter["trace_roots_only"] = True
        for key in ("call_ids", "parent_ids", "trace_ids"):
            if getattr(filters, key):
                server_filter[key] = getattr(filters, key)
        calls = []
        for call in client.get_calls(filter=server_filter or None):
            record = json.loads(json.dumps(call.to_dict(), default=str))
            record["summary"] = record.get("summary") or {}
            trace_call = _trace_call({**record, "started_at": str(record.get("started_at"))})
            if call_matches(trace_call, filters):
                calls.append(trace_call)
        calls.sort(key=lambda c: c.started_at, reverse=sort_direction == "desc")
        return calls if limit is None else calls[:limit]

    def count_calls(self, filters: CallFilters | None = None) -> int:
        return len(self.query_calls(filters))


HELD_OUT_SPLITS = frozenset({"test"})
HELD_OUT_ROLES = frozenset({"test_record"})
# The gate's split: the agent sees its aggregate figures, never a row's target or error.
GATE_SPLITS = frozenset({"valid"})
ROW_LABEL_KEYS = frozenset(
    {"target", "abs_error", "abs_error_rounded", "mae", "mae_rounded", "row_mae", "row_mae_rounded"}
)


def is_held_out(labels: dict[str, Any]) -> bool:
    """A run (config) or evaluation (kotone attributes) of a split the agent must never read."""
    return labels.get("split") in HELD_OUT_SPLITS or labels.get("role") in HELD_OUT_ROLES


def is_gate_split(labels: dict[str, Any]) -> bool:
    """A run or evaluation of the validation split: aggregates for the agent, no per-row labels."""
    return labels.get("split") in GATE_SPLITS


def without_row_labels(value: Any) -> Any:
    """`value` with every target and per-row error taken out, at any depth."""
    if isinstance(value, dict):
        return {k: without_row_labels(v) for k, v in value.items() if k not in ROW_LABEL_KEYS}
    if isinstance(value, list):
        return [without_row_labels(v) for v in value]
    return value


class AgentVisibleStore:
    """A store as the agent may see it: runs and traces of held-out splits do not exist, and the rows of the
    gate's split (validation) carry no target and no per-row error, in tables and traces alike (the run's
    and the evaluation's aggregate figures stay). Trace filters apply to what the agent sees, so a filter
    on a hidden target matches nothing."""

    def __init__(self, inner: TrackingStore):
        self._inner = inner
        self.entity, self.project = inner.entity, inner.project

    def _visible_run(self, run_id: str) -> RunInfo:
        run = self._inner.get_run(run_id)
        if is_held_out(run.config):
            raise RunNotFoundError(f"run {run_id!r} not found in {self.entity}/{self.project}")
        return run

    def list_runs(self, filters: RunFilters | None = None) -> list[RunInfo]:
        return [r for r in self._inner.list_runs(filters) if not is_held_out(r.config)]

    def get_run(self, run_id: str) -> RunInfo:
        return self._visible_run(run_id)

    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory:
        self._visible_run(run_id)
        return self._inner.get_history(run_id, keys)

    def get_table(self, run_id: str, key: str) -> RunTable:
        run = self._visible_run(run_id)
        table = self._inner.get_table(run_id, key)
        if not is_gate_split(run.config):
            return table
        return table.model_copy(
            update={
                "columns": [c for c in table.columns if c not in ROW_LABEL_KEYS],
                "rows": [without_row_labels(row) for row in table.rows],
            }
        )

    def _trace_labels(self) -> dict[str, dict[str, Any]]:
        roots = self._inner.query_calls(CallFilters(trace_roots_only=True))
        return {c.trace_id: c.attributes.get("kotone") or {} for c in roots}

    def query_calls(
        self, filters: CallFilters | None = None, limit: int | None = None, sort_direction: str = "desc"
    ) -> list[TraceCall]:
        labels = self._trace_labels()
        by_content = filters is not None and (filters.inputs or filters.output)
        inner_filters = filters.model_copy(update={"inputs": None, "output": None}) if by_content else filters
        calls = []
        for call in self._inner.query_calls(inner_filters, None, sort_direction):
            trace = labels.get(call.trace_id, {})
            if is_held_out(trace):
                continue
            if is_gate_split(trace):
                call = call.model_copy(
                    update={
                        "inputs": without_row_labels(call.inputs),
                        "output": call.output if call.parent_id is None else without_row_labels(call.output),
                    }
                )
            if by_content and not call_matches(call, filters):
                continue
            calls.append(call)
        return calls if limit is None else calls[:limit]

    def count_calls(self, filters: CallFilters | None = None) -> int:
        return len(self.query_calls(filters))


def store_settings(entity: str | None = None, project: str | None = None) -> TrackingSettings:
    """The configured settings with entity / project overridden. Naming the configured entity (or its
    "offline" label when none is configured) keeps W&B's default entity."""
    settings = tracking_settings()
    if entity and entity != settings.entity:
        settings = settings.model_copy(update={"entity": entity, "wandb_entity": entity})
    if project:
        settings = settings.model_copy(update={"project": project})
    return settings


def open_store(
    entity: str | None = None, project: str | None = None, *, agent_view: bool = False
) -> TrackingStore:
    """The store for the configured mode (see `store_settings` for entity / project).

    `agent_view=True` (what the MCP tools use) hides held-out runs and traces.
    """
    settings = store_settings(entity, project)
    store: TrackingStore = (
        CloudTrackingStore(settings) if settings.mode == "online" else LocalTrackingStore(settings)
    )
    return AgentVisibleStore(store) if agent_view else store
